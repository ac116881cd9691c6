"""One RTP stream received from a publisher (one SSRC, one simulcast layer).

It owns the packet cache and reception statistics of that stream, asks the
publisher for keyframes, and hands every packet to the down-tracks reading
from it. The per-packet path is a straight line over bytes and ints.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Callable, Optional

from . import rtcp
from .allocator import RISE_SAMPLES, next_cost
from .buffer import PacketCache, ReceiveStats
from .codecs import KeyframeTest
from .codecs.vp8 import Descriptor, parse_descriptor
from .keyframes import KeyframeRequester
from .metrics import FORWARD_TIME
from .rtp import SEQ_TS, audio_level_byte, payload_end, payload_offset
from .speaker import AMPLITUDE

if TYPE_CHECKING:
    from .downtrack import DownTrack

RtcpSender = Callable[[bytes], None]
SILENCE = b"\x7f"  # RFC 6464 level byte: voice activity off, -127 dBov
LEVEL_BYTES = tuple(bytes([b]) for b in range(256))  # no bytes built per packet


class ReceivedStream:
    def __init__(
        self,
        kind: str,
        ssrc: int,
        clock_rate: int,
        keyframe_test: Optional[KeyframeTest],
        send_rtcp: RtcpSender,
        rtcp_ssrc: int,
        cache_size: int,
        keyframe_interval: float,
        audio_level_id: Optional[int] = None,
        layer: int = 0,
        frame_size: Optional[Callable[[bytes, int], Optional[tuple[int, int]]]] = None,
        cache_seconds: Optional[float] = None,
    ) -> None:
        self.kind = kind
        self.layer = layer  # simulcast layer index (0: lowest, or the only one)
        self.ssrc = ssrc
        self.rtx_ssrc: Optional[int] = None
        self.clock_rate = clock_rate
        self.is_keyframe = keyframe_test
        self.audio_level_id = audio_level_id
        self.audio_level = SILENCE  # the latest level byte (forwarded to subscribers)
        # Running counters for speaker detection (sfu/speaker.py LevelMeter):
        # packets that carried a level, the sum of their linear amplitudes,
        # and how many had the voice-activity flag set.
        self.audio_level_packets = 0
        self.audio_loudness = 0.0
        self.audio_voiced = 0
        self.cache = PacketCache(cache_size, cache_seconds)  # by time when given
        self.stats = ReceiveStats(ssrc, clock_rate)
        self.downtracks: list[DownTrack] = []
        self._send_rtcp = send_rtcp
        self._rtcp_ssrc = rtcp_ssrc
        self.keyframes = KeyframeRequester(self._send_pli, keyframe_interval)
        self.keyframes_received = 0
        self.last_packet_time = 0.0
        self.width = 0  # from key frame headers, where the codec tells
        self.height = 0
        self.parse_vp8 = False  # parse each packet's VP8 descriptor once, for all readers
        self.descriptor: Optional[Descriptor] = None
        self.bitrate = 0.0  # bits/s, smoothed
        self.cost = 0.0  # bits/s the layer needs when flowing (for allocation)
        self._rates: deque = deque(maxlen=RISE_SAMPLES)  # its latest rates while flowing
        self._frame_size = frame_size
        self._bytes_seen = 0
        self._rate_time = 0.0
        self.sender_report: Optional[rtcp.SenderReport] = None
        self.nacks_sent = 0
        self.malformed = 0

    # --- media in -------------------------------------------------------------

    def on_rtp(self, packet: bytes, now: float) -> None:
        offset = payload_offset(packet)
        if offset < 0:
            self.malformed += 1
            return
        seq, ts = SEQ_TS.unpack_from(packet, 2)
        self.stats.update(seq, ts, now, len(packet))
        self.last_packet_time = now
        self.cache.put(seq, packet, now)
        if self.audio_level_id is not None:
            level = audio_level_byte(packet, self.audio_level_id)
            if level < 0:
                self.audio_level = SILENCE
            else:
                self.audio_level = LEVEL_BYTES[level]
                self.audio_level_packets += 1
                self.audio_loudness += AMPLITUDE[level]
                if level & 0x80:
                    self.audio_voiced += 1
        keyframe = False
        if self.is_keyframe is not None and self.is_keyframe(packet, offset):
            keyframe = True
            self._on_keyframe(packet, offset)
        end = payload_end(packet)
        if self.parse_vp8:  # simulcast VP8: every reader rewrites picture IDs
            self.descriptor = parse_descriptor(packet, offset, end)
        payload = packet[offset:end]  # sliced once for every subscriber
        layer = self.layer
        if self.stats.received & 15:
            for downtrack in self.downtracks:
                downtrack.write(packet, payload, seq, ts, offset, keyframe, now, layer)
        else:
            for downtrack in self.downtracks:
                downtrack.write(packet, payload, seq, ts, offset, keyframe, now, layer)
            if self.downtracks:
                FORWARD_TIME.observe(time.monotonic() - now)

    def _on_keyframe(self, packet: bytes, offset: int) -> None:
        self.keyframes_received += 1
        if self._frame_size is not None:
            size = self._frame_size(packet, offset)
            if size is not None:
                self.width, self.height = size

    def flowing(self, now: float, timeout: float = 0.5) -> bool:
        return now - self.last_packet_time < timeout

    def update_bitrate(self, now: float) -> None:
        """Smoothed receive bitrate; call every few hundred ms."""
        elapsed = now - self._rate_time
        if self._rate_time and elapsed > 0:
            instant = (self.stats.bytes - self._bytes_seen) * 8 / elapsed
            self.bitrate = instant if self.bitrate == 0 else 0.7 * self.bitrate + 0.3 * instant
            if self.flowing(now):
                # what the layer costs when it flows (allocator.next_cost), frozen
                # while the layer is paused so that its silence, or its ramp-up
                # once resumed, never makes it look cheap
                self._rates.append(instant)
                self.cost = next_cost(self.cost, self._rates)
            else:
                self._rates.clear()
        self._bytes_seen = self.stats.bytes
        self._rate_time = now

    def on_rtx(self, packet: bytes, payload_type: int, now: float) -> None:
        """A retransmission (RFC 4588) from the publisher: restore and process."""
        offset = payload_offset(packet)
        if offset < 0 or payload_end(packet) - offset < 2:
            return  # padding-only RTX (bandwidth probing) carries no media
        original_seq = (packet[offset] << 8) | packet[offset + 1]
        if self.cache.get(original_seq) is not None:
            return  # a probe or a late repair of something we have: nothing new
        restored = bytearray(packet[:offset])
        restored[0] &= 0xDF  # padding bit: payload is rebuilt without it
        restored[1] = (packet[1] & 0x80) | payload_type
        restored[2:4] = original_seq.to_bytes(2, "big")
        restored[8:12] = self.ssrc.to_bytes(4, "big")
        restored += packet[offset + 2 : payload_end(packet)]
        self.on_rtp(bytes(restored), now)

    def on_sender_report(self, report: rtcp.SenderReport, now: float) -> None:
        self.sender_report = report
        self.stats.last_sr_ntp = report.ntp
        self.stats.last_sr_arrival = now
        for downtrack in self.downtracks:
            downtrack.send_sender_report(report, self.layer)

    # --- requests to the publisher ----------------------------------------

    def request_keyframe(self) -> None:
        if self.is_keyframe is not None:
            self.keyframes.request()

    def _send_pli(self) -> None:
        self._send_rtcp(rtcp.build_pli(self._rtcp_ssrc, self.ssrc))

    def request_retransmission(self, seqs: list[int]) -> None:
        self.nacks_sent += 1
        self._send_rtcp(rtcp.build_nack(self._rtcp_ssrc, self.ssrc, seqs))

    def report_block(self, now: float) -> Optional[rtcp.ReportBlock]:
        if self.stats.received == 0:
            return None
        return self.stats.report_block(now)

    def counters(self) -> Counter:
        kind = self.kind
        return Counter({
            ("packets_in", kind): self.stats.received,
            ("bytes_in", kind): self.stats.bytes,
            ("packets_lost_in", kind): self.stats.lost,
            ("keyframe_requests_sent", kind): self.keyframes.sent,
            ("nacks_sent", kind): self.nacks_sent,
        })

    def close(self) -> None:
        self.keyframes.close()
        self.downtracks.clear()


def now() -> float:
    return time.monotonic()
