"""One RTP stream received from a publisher (one SSRC, one simulcast layer).

It owns the packet cache and reception statistics of that stream, asks the
publisher for keyframes, and hands every packet to its readers
(sfu/stream_reader.py: down-tracks, relay feeds, recorders, taps) as one
``ReceivedPacket`` built once. The per-packet path is a straight line over
bytes and ints; what the codec must tell (keyframe, descriptor) its handler
(sfu/codecs/) reads.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Callable, Optional

from . import rtcp
from .allocator import RISE_SAMPLES, next_cost
from .buffer import PacketCache, ReceiveStats
from .codecs import CodecHandler
from .keyframes import KeyframeRequester
from .metrics import FORWARD_TIME
from .rtp import SEQ_TS, abs_send_time, audio_level_byte, payload_end, payload_offset
from .speaker import AMPLITUDE
from .stream_reader import ReceivedPacket

if TYPE_CHECKING:
    from .stream_reader import StreamReader

RtcpSender = Callable[[bytes], None]
SILENCE = b"\x7f"  # RFC 6464 level byte: voice activity off, -127 dBov
LEVEL_BYTES = tuple(bytes([b]) for b in range(256))  # no bytes built per packet


class ReceivedStream:
    def __init__(
        self,
        kind: str,
        ssrc: int,
        clock_rate: int,
        codec: CodecHandler,
        send_rtcp: RtcpSender,
        rtcp_ssrc: int,
        cache_size: int,
        keyframe_interval: float,
        audio_level_id: Optional[int] = None,
        layer: int = 0,
        cache_seconds: Optional[float] = None,
        describe: bool = False,
    ) -> None:
        self.kind = kind
        self.layer = layer  # simulcast layer index (0: lowest, or the only one)
        self.ssrc = ssrc
        self.rtx_ssrc: Optional[int] = None
        self.clock_rate = clock_rate
        self.codec = codec
        self._video = kind == "video"
        #: Parse each packet's codec descriptor once for every reader (simulcast
        #: down-tracks rewrite picture IDs from it).
        self._describe = codec.describe if describe and codec.munges_ids else None
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
        self.readers: list[StreamReader] = []
        self._send_rtcp = send_rtcp
        self._rtcp_ssrc = rtcp_ssrc
        self.keyframes = KeyframeRequester(self._send_pli, keyframe_interval)
        self.keyframes_received = 0
        self.last_packet_time = 0.0
        self.width = 0  # from key frame headers, where the codec tells
        self.height = 0
        self.bitrate = 0.0  # bits/s, smoothed
        self.cost = 0.0  # bits/s the layer needs when flowing (for allocation)
        self._rates: deque = deque(maxlen=RISE_SAMPLES)  # its latest rates while flowing
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
        keyframe = self._video and self.codec.is_keyframe(packet, offset)
        if keyframe:
            self._on_keyframe(packet, offset)
        end = payload_end(packet)
        describe = self._describe
        received = ReceivedPacket(
            packet, packet[offset:end], seq, ts, offset, keyframe, now, self.layer,
            describe(packet, offset, end) if describe is not None else None,
            abs_send_time(now) if self._video else self.audio_level,
        )
        readers = self.readers
        for reader in readers:
            reader.write(received)
        if not self.stats.received & 15 and readers:
            FORWARD_TIME.observe(time.monotonic() - now)

    def _on_keyframe(self, packet: bytes, offset: int) -> None:
        self.keyframes_received += 1
        size = self.codec.frame_size(packet, offset)
        if size is not None:
            self.width, self.height = size

    # --- readers --------------------------------------------------------------

    def add_reader(self, reader: StreamReader) -> None:
        if reader not in self.readers:
            self.readers.append(reader)

    def remove_reader(self, reader: StreamReader) -> None:
        if reader in self.readers:
            self.readers.remove(reader)

    def has_reader(self, reader: StreamReader) -> bool:
        return reader in self.readers

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
        for reader in self.readers:
            reader.send_sender_report(report, self.layer)

    # --- requests to the publisher ----------------------------------------

    def request_keyframe(self) -> None:
        if self._video:
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
        self.readers.clear()


def now() -> float:
    return time.monotonic()
