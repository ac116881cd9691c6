"""Simulated meeting participants, many per process, cheap per packet.

A ``SimulatedParticipant`` has the two peer connections of a real client
(``sfu.transport.PeerTransport``: real ICE/DTLS/SRTP, no codec work):

* publisher: one Opus track and one VP8 simulcast camera (rid q, h, f, as
  Chromium sends them; the packets of benchmarks.peers), pre-built once and
  only restamped per packet. Every audio packet carries the RFC 6464 audio
  level: while the participant speaks (the speaking script says when) 50
  packets/s at a voice level with the V flag, while silent what Opus DTX
  sends (one packet per 400 ms at -127 dBov; ``silent_audio="full"`` sends
  50/s of silence, ``"none"`` nothing). Layers the SFU pauses (dynacast)
  stop, and restart with a key frame;
* subscriber: answers every offer the SFU makes and counts what arrives
  from the RTP headers alone: packets, sequence gaps (loss) per SSRC, and
  the forward latency, audio and video apart, from the publisher's send time
  (CLOCK_MONOTONIC, one clock for every process of the machine) carried in
  each payload. Video payloads also carry their publisher's tag
  (``video_tag``), so a subscriber knows whose video reaches it
  (``video_seen``), whatever SSRC the SFU sends it on.

One ``Pacer`` per process sends for every publisher of that process from a
single timer, so hundreds of participants cost one loop callback per tick.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from sfu import rtcp
from sfu.config import IceConfig
from sfu.media_section import URI_AUDIO_LEVEL, URI_MID, URI_RID, CodecInfo
from sfu.transport import PeerTransport

from .drivers import SessionDriver
from .peers import (
    DEFAULT_LAYERS, NTP_EPOCH, RTCP_PSFB, RTCP_SR, SEQ_TS_SSRC,
    TIME_OFFSET, TIME_OFFSET_EXT, U64, _Layer, _Stream, answer_extmap, send_vp8_layer,
    receiver_report, simulcast_offer, split_rtcp,
)

log = logging.getLogger("benchmarks.simulated")

AUDIO_PPS = 50  # 20 ms Opus frames
DTX_INTERVAL = 0.4  # Opus DTX: one comfort-noise packet per 400 ms of silence
AUDIO_TS_STEP = 960  # 20 ms at 48 kHz
SPEECH_PAYLOAD = 80  # bytes of a 20 ms Opus voice frame, about 32 kbit/s
DTX_PAYLOAD = 20  # a DTX frame is a few bytes; 20 carry our send time
OPUS_TOC = 0x78  # config 15 (hybrid, fullband, 20 ms), mono, one frame
SILENT_LEVEL = 0x7F  # RFC 6464: V=0, -127 dBov
CATCH_UP_LIMIT = 0.2  # s: a longer stall is skipped, not burst out


@dataclass
class MediaSettings:
    """What each publisher sends (the same for every participant of a run)."""

    layer_rates: tuple[float, float, float] = (20.0, 60.0, 180.0)  # packets/s of q, h, f
    fps: float = 30.0
    payload_size: int = 1100
    keyframe_interval: float = 3.0
    silent_audio: str = "dtx"  # "dtx", "full" or "none"
    video: bool = True
    audio: bool = True
    dynacast: bool = True  # honour the SFU's requests to pause layers


TAG = struct.Struct("!I")
TAG_OFFSET = TIME_OFFSET_EXT + 8  # in a video payload: after the send time


def video_tag(identity: str) -> int:
    """The number a publisher's video payloads carry, the same in every process."""
    return zlib.crc32(identity.encode()) or 1


class LatencyHistogram:
    """Forward latencies in 1%-wide buckets (value = 1.01 ** key µs)."""

    SCALE = 1 / math.log(1.01)

    def __init__(self) -> None:
        self.buckets: Counter = Counter()

    def add(self, us: int) -> None:
        self.buckets[int(math.log(us if us > 1 else 1) * self.SCALE)] += 1


class _Audio:
    """The Opus track: pre-built voice and DTX packets, restamped per send."""

    def __init__(self, level_id: Optional[int]) -> None:
        self.ssrc = 0
        self.payload_type = 111
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.sent = 0
        self.bytes_sent = 0
        self.next_at = 0.0
        self.level = 30  # -dBov while speaking; drifts a little per packet
        extension = b""
        self.level_at = -1
        if level_id is not None:
            extension = struct.pack("!HHBBBB", 0xBEDE, 1, level_id << 4, SILENT_LEVEL, 0, 0)
            self.level_at = 12 + 5
        first = 0x90 if extension else 0x80
        self.speech = self._packet(first, extension, SPEECH_PAYLOAD)
        self.dtx = self._packet(first, extension, DTX_PAYLOAD)
        self.base = 12 + len(extension)

    @staticmethod
    def _packet(first: int, extension: bytes, size: int) -> bytearray:
        payload = bytes([OPUS_TOC]) + bytes((i * 13 + 5) & 0xFF for i in range(size - 1))
        packet = bytearray(12) + extension + payload
        packet[0] = first
        return packet

    def send(self, transport: PeerTransport, speaking: bool, dtx: bool) -> None:
        buf = self.speech if speaking or not dtx else self.dtx
        if self.level_at >= 0:
            if speaking:
                self.level = min(40, max(20, self.level + random.choice((-1, 0, 1))))
                buf[self.level_at] = 0x80 | self.level
            else:
                buf[self.level_at] = SILENT_LEVEL
        struct.pack_into("!BHII", buf, 1, self.payload_type, self.seq, self.ts, self.ssrc)
        U64.pack_into(buf, self.base + TIME_OFFSET, time.monotonic_ns())
        if transport.send_rtp(bytes(buf)):
            self.sent += 1
            self.bytes_sent += len(buf)
        self.seq = (self.seq + 1) & 0xFFFF


@dataclass
class Counts:
    """Cumulative receive counters (kept after a participant leaves)."""

    packets: Counter = field(default_factory=Counter)  # by kind
    expected: Counter = field(default_factory=Counter)
    older: int = 0

    def add(self, other: "Counts") -> None:
        self.packets.update(other.packets)
        self.expected.update(other.expected)
        self.older += other.older


class SimulatedParticipant:
    def __init__(self, identity: str, session: SessionDriver, media: MediaSettings,
                 latency: dict[str, LatencyHistogram], publish: bool = True) -> None:
        self.identity = identity
        self.session = session
        self.media = media
        self.audio_latency = latency["audio"]  # shared by the participants of a process
        self.video_latency = latency["video"]
        #: publisher tag (video_tag) -> when its video last reached us (monotonic ns)
        self.video_seen: dict[int, int] = {}
        self.publishes = publish
        ice = IceConfig(addresses=["127.0.0.1"], udp_port=0)  # a client: a socket per connection
        self.publisher = PeerTransport(ice, lambda packet: None, self._on_publisher_rtcp)
        self.subscriber = PeerTransport(ice, self._on_rtp, self._on_subscriber_rtcp,
                                        on_state=self._subscriber_state)
        # a slow join's steps: when the subscriber connection's ICE, then DTLS, got through
        pc = self.subscriber.pc
        pc.on("iceconnectionstatechange",
              lambda: pc.iceConnectionState == "completed" and self._mark("subscriber_ice"))
        session.on_publisher_layers = self._dynacast
        self.layers: list[_Layer] = []
        self.enabled: dict[str, bool] = {}
        self.audio: Optional[_Audio] = None
        self.video_pt = 96
        self.speaking = False
        self.streams: dict[int, _Stream] = {}
        self.audio_ssrcs: set[int] = set()
        self.audio_pts: set[int] = set()
        self.first_media = asyncio.Event()
        self.started = 0.0
        self.join_ms: Optional[float] = None
        self.publish_ms: Optional[float] = None
        #: when each step of the join was done, in ms from its start (first time only)
        self.phases: dict[str, float] = {}
        self.offers_answered = 0
        self.errors: list[str] = []
        self.rtcp_ssrc = random.getrandbits(32)
        self.plis = 0
        self._t0 = 0.0
        self._scheduled: dict[str, int] = {}
        self._answering: Optional[asyncio.Task] = None
        self.sending = False

    # --- joining and leaving ---------------------------------------------------------

    async def join(self, expect_media: bool, timeout: float) -> float:
        """Connect, publish, answer the first offer, get media; the join time in ms."""
        self.started = time.monotonic()
        await self.session.connect()
        self._mark("connected")
        self._answering = asyncio.ensure_future(self._answer_offers())
        if self.publishes:
            await self._publish()
            await _wait_for(lambda: self.publisher.connected, timeout, "publisher transport connected")
            self.publish_ms = self._mark("publisher_connected")
            self._t0 = time.monotonic()
            self.sending = True
        if expect_media:
            await asyncio.wait_for(self.first_media.wait(), timeout)
        self.join_ms = self._mark("first_media")
        return self.join_ms

    def _subscriber_state(self, state: str) -> None:
        if state == "connected":
            self._mark("subscriber_connected")

    def _mark(self, phase: str) -> float:
        """Note that ``phase`` of the join is done (the first time only); ms so far."""
        return self.phases.setdefault(phase, round((time.monotonic() - self.started) * 1000, 1))

    async def _publish(self) -> None:
        media = self.media
        audio = video = None
        if media.audio:
            audio = self.publisher.add_sendonly("audio", CodecInfo("audio/opus", 48000, 111, channels=2),
                                                self.identity, f"{self.identity}-audio")
        if media.video:
            video = self.publisher.add_sendonly("video", CodecInfo("video/VP8", 90000, 96),
                                                self.identity, f"{self.identity}-video")
        offer = await self.publisher.create_offer()
        rids = [rid for rid, _, _, _ in DEFAULT_LAYERS]
        if video is not None:
            offer = simulcast_offer(offer, video.mid, rids)
        answer = await self.session.publish(offer)
        self._mark("publish_answered")
        await self.publisher.accept_answer(answer)
        if audio is not None:
            section = self.publisher.sent_section(audio)
            ids = answer_extmap(answer, audio.mid)
            self.audio = _Audio(ids.get(URI_AUDIO_LEVEL))
            self.audio.ssrc = section.ssrcs[0]
            self.audio.payload_type = section.codec.payload_type
        if video is not None:
            self._prepare_video(video, answer)

    def _prepare_video(self, transceiver, answer: str) -> None:
        media = self.media
        section = self.publisher.sent_section(transceiver)
        self.video_pt = section.codec.payload_type
        ids = answer_extmap(answer, transceiver.mid)
        mid_id, rid_id = ids.get(URI_MID), ids.get(URI_RID)
        if mid_id is None or rid_id is None:
            raise RuntimeError(f"publish answer lacks the MID or RID header extension: {ids}")
        mid = transceiver.mid
        for (rid, _, width, height), rate in zip(DEFAULT_LAYERS, media.layer_rates):
            layer = _Layer(rid, rate, width, height, media.fps, media.payload_size,
                           media.keyframe_interval)
            if layer.payload_size >= TAG_OFFSET + TAG.size:
                TAG.pack_into(layer.plain, 12 + TAG_OFFSET, video_tag(self.identity))
            elements = (bytes([(mid_id << 4) | (len(mid) - 1)]) + mid.encode()
                        + bytes([(rid_id << 4) | (len(rid) - 1)]) + rid.encode())
            elements += bytes(-len(elements) % 4)
            layer.ext_block = struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements
            layer.with_ext = bytearray(12) + layer.ext_block + layer.plain[12:]
            layer.ext_packets_left = 100
            self.layers.append(layer)
            self.enabled[rid] = True
        self._by_ssrc = {layer.ssrc: layer for layer in self.layers}

    async def _answer_offers(self) -> None:
        while True:
            offer = await self.session.next_subscriber_offer()
            self._mark("offered")
            try:
                answer = await self.subscriber.answer(offer)
                self._learn_offer(offer)
                await self.session.answer_subscriber(answer)
                self._mark("answered")
                self.offers_answered += 1
            except Exception as exc:  # counted; the run reports it
                self.errors.append(f"subscriber offer: {type(exc).__name__}: {exc}")

    def _learn_offer(self, sdp: str) -> None:
        """Which payload types and SSRCs are audio (counted apart from video).
        A recycled m-line keeps its SSRC and numbering, so counts carry on."""
        kind = ""
        for line in sdp.splitlines():
            if line.startswith("m="):
                kind = line[2:7]
            elif kind == "audio" and line.startswith("a=rtpmap:"):
                self.audio_pts.add(int(line[9:].split()[0]))
            elif kind == "audio" and line.startswith("a=ssrc:"):
                self.audio_ssrcs.add(int(line[7:].split()[0]))

    async def leave(self) -> None:
        self.sending = False
        if self._answering is not None:
            self._answering.cancel()
        await self.session.close()
        await asyncio.gather(_quietly(self.publisher.close()), _quietly(self.subscriber.close()))

    # --- sending (called by the Pacer) -------------------------------------------------

    def pump(self, now: float) -> None:
        """Send what is due since the last call (packets evenly spaced per stream)."""
        elapsed = now - self._t0
        audio = self.audio
        if audio is not None:
            silent = self.media.silent_audio
            if self.speaking or silent == "full":
                interval, dtx = 1 / AUDIO_PPS, False
            elif silent == "dtx":
                interval, dtx = DTX_INTERVAL, True
            else:
                interval, dtx = 0.0, True
            if interval:
                if audio.next_at < now - CATCH_UP_LIMIT or audio.next_at > now + interval:
                    audio.next_at = now  # stalled, or speech starts after a DTX pause
                while audio.next_at <= now:
                    audio.send(self.publisher, self.speaking, dtx)
                    audio.ts = (audio.ts + int(interval * 48000)) & 0xFFFFFFFF
                    audio.next_at += interval
        for layer in self.layers:
            if not self.enabled[layer.rid]:
                continue
            due = int(elapsed * layer.rate) - layer.scheduled
            if due > layer.rate * CATCH_UP_LIMIT:  # stalled: skip, do not burst
                layer.scheduled += due - 1
                due = 1
            layer.scheduled += due
            for _ in range(due):
                send_vp8_layer(self.publisher, layer, self.video_pt)

    def _dynacast(self, enabled: dict[str, bool]) -> None:
        if not self.media.dynacast:
            return
        elapsed = time.monotonic() - self._t0
        for layer in self.layers:
            on = enabled.get(layer.rid, True)
            if on and not self.enabled[layer.rid]:
                layer.key_pending = True  # a resumed encoding starts with a key frame
                layer.scheduled = int(elapsed * layer.rate)
            self.enabled[layer.rid] = on

    def send_sender_reports(self) -> None:
        now = time.time()
        ntp = (int(now + NTP_EPOCH) << 32) | int((now % 1) * (1 << 32))
        packet = b""
        streams = [(layer.ssrc, layer.sent, layer.bytes_sent, 90000) for layer in self.layers
                   if self.enabled[layer.rid]]
        if self.audio is not None:
            streams.append((self.audio.ssrc, self.audio.sent, self.audio.bytes_sent, 48000))
        for ssrc, sent, size, _ in streams:
            packet += rtcp.build_sr(ssrc, ntp, 0, sent, size - 12 * sent)
        if packet:
            self.publisher.send_rtcp(packet)

    def _on_publisher_rtcp(self, packet: bytes) -> None:
        for pt, fmt, body in split_rtcp(packet):
            if pt == RTCP_PSFB and fmt in (1, 4):  # PLI, FIR: a key frame of that layer
                self.plis += 1
                at = 8 if fmt == 1 else 12
                media = int.from_bytes(body[at:at + 4], "big") if len(body) >= at + 4 else 0
                layer = self._by_ssrc.get(media) if self.layers else None
                for target in [layer] if layer is not None else self.layers:
                    target.key_pending = True

    # --- receiving ---------------------------------------------------------------------

    def _on_rtp(self, p: bytes) -> None:
        now = time.monotonic_ns()
        b0 = p[0]
        offset = 12 + ((b0 & 0x0F) << 2)
        if b0 & 0x10:
            offset += 4 + (((p[offset + 2] << 8) | p[offset + 3]) << 2)
        seq, _, ssrc = SEQ_TS_SSRC.unpack_from(p, 2)
        stream = self.streams.get(ssrc)
        if stream is None:
            stream = self.streams[ssrc] = _Stream(ssrc, seq)
            if (p[1] & 0x7F) in self.audio_pts:
                self.audio_ssrcs.add(ssrc)
            self.first_media.set()
        else:
            delta = (seq - stream.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < stream.max_seq:
                    stream.cycles += 0x10000
                stream.max_seq = seq
            else:
                stream.older += 1
        stream.received += 1
        if p[offset] & 0x80:  # a VP8 descriptor with X: video (an Opus TOC byte here is < 0x80)
            at = offset + TIME_OFFSET_EXT
            histogram = self.video_latency
            if len(p) >= at + 12:
                self.video_seen[TAG.unpack_from(p, at + 8)[0]] = now
        else:
            at = offset + TIME_OFFSET
            histogram = self.audio_latency
        if len(p) >= at + 8:
            histogram.add((now - U64.unpack_from(p, at)[0]) // 1000)

    def _on_subscriber_rtcp(self, packet: bytes) -> None:
        for pt, _, body in split_rtcp(packet):
            if pt == RTCP_SR and len(body) >= 16:
                ssrc, ntp = struct.unpack_from("!IQ", body, 4)
                stream = self.streams.get(ssrc)
                if stream is not None:
                    stream.last_sr = (ntp >> 16) & 0xFFFFFFFF
                    stream.last_sr_at = time.monotonic()

    def send_receiver_report(self) -> None:
        self.subscriber.send_rtcp(receiver_report(self.rtcp_ssrc, self.streams.values(), time.monotonic()))

    def counts(self) -> Counts:
        counts = Counts()
        for ssrc, stream in self.streams.items():
            kind = "audio" if ssrc in self.audio_ssrcs else "video"
            counts.packets[kind] += stream.received
            counts.expected[kind] += stream.expected
            counts.older += stream.older
        return counts

    def sent(self) -> Counter:
        sent: Counter = Counter()
        if self.audio is not None:
            sent["audio"] += self.audio.sent
        for layer in self.layers:
            sent["video_" + layer.rid] += layer.sent
        return sent


class Pacer:
    """Sends for every publisher of this process from one timer; RTCP every 2 s."""

    def __init__(self, tick: float = 0.01, report_every: float = 2.0) -> None:
        self.tick = tick
        self.report_every = report_every
        self.participants: list[SimulatedParticipant] = []
        self.max_lag = 0.0
        self.lag_sum = 0.0
        self.ticks = 0
        self._timer: Optional[asyncio.TimerHandle] = None
        self._next = 0.0
        self._next_report = 0.0
        self._report_index = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._next = loop.time()
        self._next_report = self._next + self.report_every
        self._timer = loop.call_at(self._next, self._run)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        loop = asyncio.get_running_loop()
        now_loop = loop.time()
        lag = now_loop - self._next
        self.max_lag = max(self.max_lag, lag)
        self.lag_sum += lag
        self.ticks += 1
        now = time.monotonic()
        for participant in self.participants:
            if participant.sending:
                try:
                    participant.pump(now)
                except Exception as exc:
                    participant.errors.append(f"send: {type(exc).__name__}: {exc}")
                    participant.sending = False
        if now_loop >= self._next_report:
            self._next_report += self.report_every
            for participant in self.participants:
                if participant.sending:
                    participant.send_sender_reports()
                participant.send_receiver_report()
        self._next += self.tick
        if self._next < now_loop:
            self._next = now_loop + self.tick
        self._timer = loop.call_at(self._next, self._run)


async def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _quietly(awaitable, timeout: float = 5.0) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout)
    except Exception:
        pass
