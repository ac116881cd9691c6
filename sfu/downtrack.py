"""A published track as sent to one subscriber.

The down-track rewrites each forwarded packet's header for its subscriber
(SSRC, sequence number, timestamp, payload type, MID and abs-send-time or
audio level), remembers what it sent so that NACKs can be answered from the
publisher stream's cache, and translates sender reports into its own
numbering so that the subscriber can keep audio and video in sync.

What does not change from packet to packet (the header's fixed fields, the
extension block's template and the transport's send function, bound to its
SRTP context and route) is kept ready in one tuple, the send plan. It is
rebuilt when it can go stale: on bind, and whenever the transport's
``route_version`` moves (connected, route resolved, DTLS ended, closed).
"""

from __future__ import annotations

import random
import struct
import time
from collections import Counter
from typing import TYPE_CHECKING, Callable, Optional

from . import rtcp
from .codecs import IdMunger, handler as codec_handler
from .layer_selector import OFF, TrackSettings
from .munger import RtpMunger
from .rtp import HEADER, abs_send_time, payload_end, payload_offset
from .send_history import SendHistory

if TYPE_CHECKING:
    from .published_track import PublishedTrack
    from .stream import ReceivedStream
    from .stream_reader import ReceivedPacket
    from .media_section import MediaSection
    from .transport import PeerTransport

KEYFRAME_RETRY = 1.0  # seconds without a keyframe before asking again


class DownTrack:
    def __init__(self, track: PublishedTrack, transport: PeerTransport) -> None:
        self.track = track
        self.track_id = track.id
        self.kind = track.kind
        self.transport = transport
        self.mid: Optional[str] = None
        self.ssrc = 0
        self.rtx_ssrc: Optional[int] = None
        self.payload_type = 0
        self.rtx_payload_type: Optional[int] = None
        self.clock_rate = 90000
        self.munger = RtpMunger(random.getrandbits(16), random.getrandbits(32))
        self.codec = codec_handler(track.codec.name)
        #: Rewrites the codec's picture IDs across simulcast layer switches.
        self.ids: Optional[IdMunger] = self.codec.id_munger() if track.simulcast else None
        self._rtx_seq = random.getrandbits(16)
        self.history = SendHistory()
        self._record = self.history.record
        #: (header packer, first byte, payload type, SSRC, extension head, tail, send function)
        self._plan: Optional[tuple] = None
        self._route_version = -1
        self._ext_head = b""
        self._ext_tail = b""
        self._ext_kind = 0  # 0: none, 1: abs-send-time, 2: audio level
        self._first_byte = 0x80
        self._sr_sent: dict[int, float] = {}
        self.settings = TrackSettings()
        self.current = OFF  # layer being forwarded
        self.target = OFF  # layer to switch to at its next keyframe
        self.desired = OFF  # what the subscriber may have (wanted, capped): dynacast input
        self.max_temporal = 2
        self.bound = False
        self.on_layer_changed: Callable[[DownTrack], None] = lambda downtrack: None
        self.waiting_since = 0.0
        self.packets_sent = 0
        self.octets_sent = 0
        self.nacks_received = 0
        self.retransmitted = 0
        self.keyframe_requests = 0
        self.layer_switches = 0
        self.fraction_lost = 0  # as the subscriber reports it (1/256)
        self.downstream_lost = 0  # what of it the path from us to the subscriber lost (1/256)
        self._source_counts: Optional[tuple] = None  # (stream, expected, received) at the last report
        self.jitter = 0
        self.rtt: Optional[float] = None
        self.report_time = 0.0  # when the last receiver report about us came
        self.switched_at = 0.0  # when forwarding last (re)started

    @property
    def stream(self) -> Optional[ReceivedStream]:
        """The stream currently forwarded (or awaited)."""
        layer = self.current if self.current != OFF else self.target
        return self.track.layers[layer] if layer != OFF else None

    @property
    def paused(self) -> bool:
        return self.target == OFF

    # --- setup ----------------------------------------------------------------

    def bind(self, section: MediaSection) -> None:
        """Take the negotiated send parameters; forwarding starts on set_target."""
        self.mid = section.mid
        self.ssrc = section.ssrcs[0]
        self.payload_type = section.codec.payload_type
        self.rtx_payload_type = section.codec.rtx_payload_type
        self.rtx_ssrc = next(iter(section.rtx_ssrcs), None) if self.rtx_payload_type else None
        self.clock_rate = section.codec.clock_rate
        self._build_extensions(section.extensions)
        self.bound = True
        self._plan = None

    def set_target(self, layer: int) -> None:
        """Forward ``layer`` from its next keyframe on (OFF: stop forwarding)."""
        if layer == self.target:
            return
        self.target = layer
        if layer == OFF:
            if self.current != OFF:
                self.current = OFF
                self.on_layer_changed(self)
        elif layer != self.current:
            self.waiting_since = time.monotonic()
            self.request_keyframe()
        self.sync_streams()

    def sync_streams(self) -> None:
        """Be in the reader list of exactly the current and target layers."""
        wanted = {self.current, self.target} - {OFF} if self.bound else set()
        for index, stream in enumerate(self.track.layers):
            if stream is None:
                continue
            present = stream.has_reader(self)
            if index in wanted and not present:
                stream.add_reader(self)
            elif index not in wanted and present:
                stream.remove_reader(self)

    def source_replaced(self) -> None:
        """The publisher reconnected and its streams are new ones: resume at
        their next keyframe, numbering continuing as after a layer switch."""
        self.current = OFF
        self.history.clear()  # NACKs must not look up the old streams
        self.waiting_since = time.monotonic()
        self.sync_streams()

    def detach(self) -> None:
        self.bound = False
        self.sync_streams()

    def _build_extensions(self, extensions: dict[str, int]) -> None:
        from .media_section import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID

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

    def write(self, packet: ReceivedPacket) -> None:
        """Forward one packet of a stream this down-track reads."""
        layer = packet.layer
        if layer != self.current:
            if layer != self.target or not (packet.keyframe or self.kind == "audio"):
                return
            self._switch(packet)
        munger = self.munger
        seq = packet.seq
        payload = packet.payload
        if not payload:
            munger.drop(seq)  # padding only: nothing for the subscriber
            return
        ids = self.ids
        if ids is None:
            rewritten = munger.rewrite(seq, packet.ts, packet.arrival)
            if rewritten is None:
                return
        else:
            description = packet.description
            if description is None or description.tid > self.max_temporal:
                munger.drop(seq)
                return
            rewritten = munger.rewrite(seq, packet.ts, packet.arrival)
            if rewritten is None:
                return
            if ids.offsets == (0, 0):  # never switched: the IDs are already right
                ids.record(packet.data, description)
            else:
                payload = bytearray(payload)
                ids.rewrite(payload, description, packet.offset)
        out_seq, out_ts = rewritten
        self._record(out_seq, seq, layer, out_ts, None if ids is None else ids.offsets)
        plan = self._plan
        if plan is None or self._route_version != self.transport.route_version:
            plan = self._build_plan()
        pack, first, payload_type, ssrc, ext_head, ext_tail, send = plan
        if send is not None:
            # the extension's value is the packet's (abs-send-time or audio level;
            # a plan without that extension packs none of it)
            head = pack(first, packet.marker | payload_type, out_seq, out_ts, ssrc,
                        ext_head, packet.extension_value, ext_tail)
            send(head, payload)
        self.packets_sent += 1
        self.octets_sent += len(payload)

    def _build_plan(self) -> tuple:
        self._route_version = self.transport.route_version
        # header and extension block in one pack: fixed fields, template, the
        # per-packet value (abs-send-time: 3 bytes, audio level: 1, none: 0), padding
        value = (0, 3, 1)[self._ext_kind]
        pack = struct.Struct(f"!BBHII{len(self._ext_head)}s{value}s{len(self._ext_tail)}s").pack
        self._plan = (pack, self._first_byte, self.payload_type, self.ssrc, self._ext_head, self._ext_tail,
                      self.transport.rtp_sender())
        return self._plan

    def _switch(self, packet: ReceivedPacket) -> None:
        previous = self.current
        self.current = packet.layer
        self.switched_at = packet.arrival
        self.munger.switch(packet.seq, packet.ts, packet.arrival, self.clock_rate)
        self._source_counts = self._count_source()  # the next report's loss is measured from here
        if self.ids is not None:
            self.ids.switch(packet.data, packet.offset)
        if previous != OFF:
            self.layer_switches += 1
        self.sync_streams()
        self.on_layer_changed(self)

    def _extension_block(self, now: float) -> bytes:
        kind = self._ext_kind
        if kind == 1:
            return self._ext_head + abs_send_time(now) + self._ext_tail
        if kind == 2:
            return self._ext_head + self.track.layers[0].audio_level + self._ext_tail
        return self._ext_head

    # --- RTCP from the subscriber -------------------------------------------

    def on_nack(self, lost: list[int], now: float) -> None:
        self.nacks_received += 1
        missing: dict[ReceivedStream, list[int]] = {}
        for out_seq in lost:
            sent = self.history.lookup(out_seq)
            stream = self.track.layers[sent.layer] if sent is not None else None
            if stream is None:
                continue
            packet = stream.cache.get(sent.src_seq)
            if packet is None:
                missing.setdefault(stream, []).append(sent.src_seq)
            else:
                self._retransmit(packet, out_seq, sent.out_ts, now, sent.ids)
        for stream, seqs in missing.items():
            stream.request_retransmission(seqs)

    def _retransmit(self, packet: bytes, out_seq: int, out_ts: int, now: float, ids_state=None) -> None:
        offset = payload_offset(packet)
        if offset < 0:
            return
        end = payload_end(packet)
        payload = packet[offset:end]
        if self.ids is not None:
            description = self.codec.describe(packet, offset, end)
            if description is None:
                return
            payload = bytearray(payload)
            self.ids.rewrite(payload, description, offset, record=False, offsets=ids_state)
            payload = bytes(payload)
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
        self.downstream_lost = max(0, block.fraction_lost - self._source_lost())
        self.jitter = block.jitter
        self.report_time = now
        sent = self._sr_sent.get(block.lsr)
        if sent is not None and block.lsr:
            self.rtt = max(0.0, now - sent - block.dlsr / 65536)

    def _source_lost(self) -> int:
        """What the forwarded stream itself missed since the last report (1/256):
        the publisher's uplink lost it, or the server dropped it late. We pass
        such gaps on (the subscriber NACKs them, we answer from the cache), so
        the subscriber reports them as loss; they say nothing of its downlink."""
        previous, counts = self._source_counts, self._count_source()
        self._source_counts = counts
        if counts is None or previous is None or previous[0] is not counts[0]:
            return 0
        expected = counts[1] - previous[1]
        lost = expected - (counts[2] - previous[2])
        return min(255, (lost << 8) // expected) if expected > 0 and lost > 0 else 0

    def _count_source(self) -> Optional[tuple]:
        stream = self.track.layers[self.current] if self.current != OFF else None
        return (stream, stream.stats.expected, stream.stats.received) if stream is not None else None

    def request_keyframe(self) -> None:
        """Ask for a keyframe of the layer we forward or are switching to."""
        layer = self.target if self.target != OFF else self.current
        stream = self.track.layers[layer] if layer != OFF else None
        if stream is not None and self.kind == "video":
            self.keyframe_requests += 1
            stream.request_keyframe()

    def retry_keyframe(self, now: float) -> None:
        waiting = self.target != OFF and self.target != self.current
        if waiting and now - self.waiting_since > KEYFRAME_RETRY:
            self.waiting_since = now
            self.request_keyframe()

    def send_sender_report(self, report: rtcp.SenderReport, layer: int = 0) -> None:
        """Translate the publisher's SR into this down-track's numbering (only the
        layer being forwarded: a pending layer's timestamps use another base)."""
        if not self.munger.started or self.current == OFF or layer != self.current:
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
            ("layer_switches", kind): self.layer_switches,
        })

    def close(self) -> None:
        self.detach()
