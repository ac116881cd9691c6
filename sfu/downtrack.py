"""A published track as sent to one subscriber.

The down-track rewrites each forwarded packet's header for its subscriber
(SSRC, sequence number, timestamp, payload type, MID and abs-send-time or
audio level), remembers what it sent so that NACKs can be answered from the
publisher stream's cache, and translates sender reports into its own
numbering so that the subscriber can keep audio and video in sync.
"""

from __future__ import annotations

import random
import struct
import time
from collections import Counter
from typing import TYPE_CHECKING, Optional

from . import rtcp
from .munger import RtpMunger
from .rtp import HEADER, abs_send_time

if TYPE_CHECKING:
    from .stream import ReceivedStream
    from .transport import MediaSection, PeerTransport

HISTORY = 2048  # sent packets remembered for NACK lookups (power of two)
KEYFRAME_RETRY = 1.0  # seconds without a keyframe before asking again


class DownTrack:
    def __init__(self, track_id: str, kind: str, transport: PeerTransport) -> None:
        self.track_id = track_id
        self.kind = kind
        self.transport = transport
        self.stream: Optional[ReceivedStream] = None
        self.mid: Optional[str] = None
        self.ssrc = 0
        self.rtx_ssrc: Optional[int] = None
        self.payload_type = 0
        self.rtx_payload_type: Optional[int] = None
        self.clock_rate = 90000
        self.munger = RtpMunger(random.getrandbits(16), random.getrandbits(32))
        self._rtx_seq = random.getrandbits(16)
        self._sent_seq = [-1] * HISTORY
        self._src_seq = [0] * HISTORY
        self._sent_ts = [0] * HISTORY
        self._ext_head = b""
        self._ext_tail = b""
        self._ext_kind = 0  # 0: none, 1: abs-send-time, 2: audio level
        self._first_byte = 0x80
        self._sr_sent: dict[int, float] = {}
        self.needs_keyframe = True
        self.waiting_since = 0.0
        self.paused = False
        self.packets_sent = 0
        self.octets_sent = 0
        self.nacks_received = 0
        self.retransmitted = 0
        self.keyframe_requests = 0
        self.fraction_lost = 0
        self.jitter = 0
        self.rtt: Optional[float] = None
        self.remb: Optional[int] = None

    # --- setup ----------------------------------------------------------------

    def bind(self, section: MediaSection, stream: ReceivedStream) -> None:
        """Take the negotiated send parameters and start reading ``stream``."""
        self.bind_pending(section)
        self.attach(stream)

    def bind_pending(self, section: MediaSection) -> None:
        """Take the negotiated send parameters; the stream comes later."""
        self.mid = section.mid
        self.ssrc = section.ssrcs[0]
        self.payload_type = section.codec.payload_type
        self.rtx_payload_type = section.codec.rtx_payload_type
        self.rtx_ssrc = next(iter(section.rtx_ssrcs), None) if self.rtx_payload_type else None
        self.clock_rate = section.codec.clock_rate
        self._build_extensions(section.extensions)

    def attach(self, stream: ReceivedStream) -> None:
        if self.stream is not None and self in self.stream.downtracks:
            self.stream.downtracks.remove(self)
        self.stream = stream
        stream.downtracks.append(self)
        self._restart()

    def detach(self) -> None:
        if self.stream is not None and self in self.stream.downtracks:
            self.stream.downtracks.remove(self)
        self.stream = None

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            self._restart()

    def _restart(self) -> None:
        self.needs_keyframe = True
        self.waiting_since = time.monotonic()
        self.request_keyframe()

    def _build_extensions(self, extensions: dict[str, int]) -> None:
        from .transport import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID

        elements = b""
        size = 0
        mid_id = extensions.get(URI_MID)
        if mid_id and self.mid and 0 < mid_id < 15:
            value = self.mid.encode()[:16]
            elements += bytes([(mid_id << 4) | (len(value) - 1)]) + value
            size += 1 + len(value)
        abs_id = extensions.get(URI_ABS_SEND_TIME)
        level_id = extensions.get(URI_AUDIO_LEVEL)
        if self.kind == "video" and abs_id and 0 < abs_id < 15:
            elements += bytes([(abs_id << 4) | 2])
            size += 4
            self._ext_kind = 1
        elif self.kind == "audio" and level_id and 0 < level_id < 15:
            elements += bytes([level_id << 4])
            size += 2
            self._ext_kind = 2
        if size == 0:
            self._first_byte = 0x80
            return
        padding = -size % 4
        self._ext_head = struct.pack("!HH", 0xBEDE, (size + padding) // 4) + elements
        self._ext_tail = b"\x00" * padding
        self._first_byte = 0x90

    # --- media out ------------------------------------------------------------

    def write(
        self, packet: bytes, seq: int, ts: int, offset: int, end: int, keyframe: bool, now: float
    ) -> None:
        """Forward one packet of the stream this down-track reads."""
        if self.paused:
            return
        munger = self.munger
        if self.needs_keyframe:
            if not keyframe and self.kind == "video":
                return
            self.needs_keyframe = False
            munger.switch(seq, ts, now, self.clock_rate)
        if end <= offset:
            munger.drop(seq)  # padding only: nothing for the subscriber
            return
        rewritten = munger.rewrite(seq, ts, now)
        if rewritten is None:
            return
        out_seq, out_ts = rewritten
        index = out_seq & (HISTORY - 1)
        self._sent_seq[index] = out_seq
        self._src_seq[index] = seq
        self._sent_ts[index] = out_ts
        header = HEADER.pack(
            self._first_byte, (packet[1] & 0x80) | self.payload_type, out_seq, out_ts, self.ssrc
        )
        self.transport.send_rtp(header + self._extension_block(now) + packet[offset:end])
        self.packets_sent += 1
        self.octets_sent += end - offset

    def _extension_block(self, now: float) -> bytes:
        kind = self._ext_kind
        if kind == 1:
            return self._ext_head + abs_send_time(now) + self._ext_tail
        if kind == 2:
            return self._ext_head + self.stream.audio_level + self._ext_tail
        return self._ext_head

    # --- RTCP from the subscriber -------------------------------------------

    def on_nack(self, lost: list[int], now: float) -> None:
        self.nacks_received += 1
        missing = []
        for out_seq in lost:
            index = out_seq & (HISTORY - 1)
            if self._sent_seq[index] != out_seq or self.stream is None:
                continue
            src_seq = self._src_seq[index]
            packet = self.stream.cache.get(src_seq)
            if packet is None:
                missing.append(src_seq)
            else:
                self._retransmit(packet, out_seq, self._sent_ts[index], now)
        if missing and self.stream is not None:
            self.stream.request_retransmission(missing)

    def _retransmit(self, packet: bytes, out_seq: int, out_ts: int, now: float) -> None:
        from .rtp import payload_end, payload_offset

        offset = payload_offset(packet)
        if offset < 0:
            return
        payload = packet[offset : payload_end(packet)]
        marker = packet[1] & 0x80
        if self.rtx_ssrc is not None and self.rtx_payload_type is not None:
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            header = HEADER.pack(
                self._first_byte, marker | self.rtx_payload_type, self._rtx_seq, out_ts, self.rtx_ssrc
            )
            payload = out_seq.to_bytes(2, "big") + payload
        else:
            header = HEADER.pack(
                self._first_byte, marker | self.payload_type, out_seq, out_ts, self.ssrc
            )
        if self.transport.send_rtp(header + self._extension_block(now) + payload):
            self.retransmitted += 1

    def on_receiver_report(self, block: rtcp.ReportBlock, now: float) -> None:
        self.fraction_lost = block.fraction_lost
        self.jitter = block.jitter
        sent = self._sr_sent.get(block.lsr)
        if sent is not None and block.lsr:
            self.rtt = max(0.0, now - sent - block.dlsr / 65536)

    def request_keyframe(self) -> None:
        if self.stream is not None and self.kind == "video":
            self.keyframe_requests += 1
            self.stream.request_keyframe()

    def retry_keyframe(self, now: float) -> None:
        if self.needs_keyframe and not self.paused and now - self.waiting_since > KEYFRAME_RETRY:
            self.waiting_since = now
            self.request_keyframe()

    def send_sender_report(self, report: rtcp.SenderReport) -> None:
        """Translate the publisher's SR into this down-track's numbering."""
        if not self.munger.started or self.paused:
            return
        out_ts = (report.rtp_ts + self.munger.ts_offset) & 0xFFFFFFFF
        self.transport.send_rtcp(
            rtcp.build_sr(self.ssrc, report.ntp, out_ts, self.packets_sent, self.octets_sent)
        )
        if len(self._sr_sent) > 8:
            self._sr_sent.clear()
        self._sr_sent[(report.ntp >> 16) & 0xFFFFFFFF] = time.monotonic()

    def counters(self) -> Counter:
        kind = self.kind
        return Counter({
            ("packets_out", kind): self.packets_sent,
            ("bytes_out", kind): self.octets_sent,
            ("nacks_received", kind): self.nacks_received,
            ("retransmissions", kind): self.retransmitted,
            ("keyframe_requests_received", kind): self.keyframe_requests,
        })

    def close(self) -> None:
        self.detach()
