"""Cheap load-generator peers: real ICE/DTLS/SRTP, no encoding, no decoding.

A peer is one process. It speaks pysfu's WebSocket signaling (aiohttp) and
carries media over ``sfu.transport.PeerTransport`` (aiortc reduced to a
secure datagram pipe), so the only per-packet work on the peer's side is
SRTP plus a few byte reads:

* ``publisher``: joins, publishes one VP8 video track and sends pre-built
  RTP packets at a fixed rate (valid VP8 payload descriptors, a keyframe
  every ``--keyframe-interval`` seconds and on every PLI/FIR, marker bit on
  the last packet of each frame, a sender report every second);
* ``publisher --simulcast``: the same track as three VP8 simulcast layers
  (rid q, h, f; see SimulcastPublisherPeer), SSRCs announced only through the
  MID/RID header extensions, VP8 descriptors with picture ID, TL0PICIDX, TID;
* ``subscriber``: joins with auto_subscribe, answers the server's
  subscriber offers, counts packets, sequence gaps (loss) per SSRC and the
  forwarding latency read from the payload, and sends a receiver report
  every second.

Every payload carries the publisher's ``time.monotonic_ns()`` at send time
(CLOCK_MONOTONIC is one clock for all processes of a Linux machine), so a
subscriber measures publisher -> SFU -> subscriber latency without decoding.
Payload layout (offsets inside the RTP payload)::

    0       VP8 payload descriptor: 0x10 (S=1, PID 0) on a frame's first
            packet, 0x00 otherwise; no extension byte (simulcast: a 6-byte
            descriptor with X=1, so everything below sits 5 bytes later and
            the send time at 16)
    1..10   first packet of a frame: VP8 frame header (3-byte frame tag with
            P=0 for a key frame, then start code and 640x480 for a key
            frame); other packets: filler
    11..18  send time, monotonic nanoseconds, big-endian
    19..    filler

Control (used by benchmarks.forwarding): each peer prints one JSON object
per line on stdout: ``{"event": "ready"}`` (publisher connected and
sending), ``{"event": "media"}`` (subscriber got its first packet),
``{"event": "stats", ...}`` (answer to a ``stats`` line on stdin),
``{"event": "error", "message": ...}``. ``quit`` or end of stdin stops the
peer; so does ``--max-seconds``.

    python -m benchmarks.peers publisher --url ws://127.0.0.1:7880/ws --rate 1000
    python -m benchmarks.peers subscriber --url ws://127.0.0.1:7880/ws
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import random
import struct
import sys
import time
from array import array
from collections import Counter
from typing import Any, Optional

import aiohttp

from sfu import rtcp
from sfu.config import IceConfig
from sfu.media_section import URI_MID, URI_REPAIRED_RID, URI_RID, CodecInfo
from sfu.transport import PeerTransport

log = logging.getLogger("benchmarks.peers")

RTP_HEADER = struct.Struct("!BBHII")
SEQ_TS_SSRC = struct.Struct("!HII")
U64 = struct.Struct("!Q")
TIME_OFFSET = 11  # where the send time sits in the payload
TIME_OFFSET_EXT = 16  # ... after a 6-byte descriptor (X=1 with picture ID, TL0PICIDX, TID)
MIN_PAYLOAD = TIME_OFFSET_EXT + 8
LATE_US = 50_000  # a packet this late counts against a run "holding" (benchmarks.forwarding)
LATE_SLOT_NS = 10_000_000  # late packets are counted per 10 ms of arrival time, to line peers up
AUDIO_PAYLOAD = 80  # bytes of an Opus-like audio payload (first byte < 0x80)
DEFAULT_LAYERS = (("q", 150.0, 320, 180), ("h", 300.0, 640, 360), ("f", 550.0, 1280, 720))
TID_PATTERN = (0, 2, 1, 2)  # temporal layers of Chromium's VP8 simulcast (L1T3)
NTP_EPOCH = 2208988800  # seconds from 1900 to 1970

# VP8 frame headers (RFC 6386 9.1): frame tag with P bit (bit 0 of byte 0)
# clear for a key frame, set for an inter frame; a key frame continues with
# the start code 9d 01 2a and 14-bit width and height (640x480).
KEY_HEADER = bytes([0x50, 0x42, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01])
DELTA_HEADER = bytes([0x31, 0x42, 0x00]) + bytes(7)
FILLER_HEADER = bytes(range(1, 11))

RTCP_SR, RTCP_RTPFB, RTCP_PSFB = 200, 205, 206


def emit(event: str, **fields: Any) -> None:
    """One control line on stdout."""
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def latency_bucket(us: int) -> int:
    """Histogram key of a latency in µs: 1% wide buckets (value = 1.01**key)."""
    return int(math.log(max(us, 1)) / math.log(1.01))


def bucket_value(key: int) -> float:
    return 1.01 ** (key + 0.5)


split_rtcp = rtcp.split  # (packet type, fmt, packet) of a compound RTCP packet


class Signaling:
    """A minimal client of pysfu's WebSocket signaling (requests + events)."""

    def __init__(self, url: str, timeout: float = 20.0,
                 http: Optional[aiohttp.ClientSession] = None) -> None:
        self.url = url
        self.timeout = timeout
        self._shared_http = http  # many peers of one process share one HTTP session
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future] = {}
        self.events: asyncio.Queue = asyncio.Queue()
        self._session: Optional[aiohttp.ClientSession] = None
        self._ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self._reader: Optional[asyncio.Task] = None
        self.closed = asyncio.Event()

    async def connect(self) -> None:
        self._session = self._shared_http or aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url)
        self._reader = asyncio.ensure_future(self._read())

    async def request(self, message: dict) -> dict:
        message = dict(message, id=next(self._ids))
        future = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        await self._ws.send_str(json.dumps(message))
        try:
            response = await asyncio.wait_for(future, self.timeout)
        finally:
            self._pending.pop(message["id"], None)
        if response.get("type") == "error":
            raise RuntimeError(f"{message['type']}: {response.get('code')}: {response.get('message')}")
        return response

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                future = self._pending.get(data.get("id"))
                if future is not None and not future.done():
                    future.set_result(data)
                elif data.get("id") is None:
                    self.events.put_nowait(data)
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("signaling closed"))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None and self._session is not self._shared_http:
            await self._session.close()


class PublisherPeer:
    """Publishes one VP8 track of pre-built packets at ``rate`` packets/s."""

    def __init__(
        self,
        url: str,
        room: str,
        rate: float,
        fps: float = 30.0,
        payload_size: int = 1100,
        keyframe_interval: float = 2.0,
        tick: float = 0.005,
        ice: Optional[IceConfig] = None,
        name: str = "publisher",
        audio_rate: float = 0.0,
    ) -> None:
        self.signaling = Signaling(url)
        self.room = room
        self.name = name
        self.rate = rate
        self.audio_rate = audio_rate  # Opus-like packets/s on an audio m-line (0: none)
        self.tick = tick
        self.transport = PeerTransport(
            ice or IceConfig(addresses=["127.0.0.1"], udp_port=0), lambda packet: None, self._on_rtcp
        )
        self.packets_per_frame = max(1, round(rate / fps))
        self.frames_per_key = max(1, round(keyframe_interval * rate / self.packets_per_frame))
        self.ts_per_frame = 90000 * self.packets_per_frame / rate
        self.payload_size = max(MIN_PAYLOAD, payload_size)
        self._buf = bytearray(12 + self.payload_size)
        filler = bytes((i * 7 + 3) & 0xFF for i in range(self.payload_size))
        self._buf[12:] = filler
        self.payload_type = 96
        self.ssrc = 0
        self.audio_payload_type = 111
        self.audio_ssrc = 0
        self._audio = bytearray(12 + AUDIO_PAYLOAD)
        self._audio[12:] = bytes((0x78 + i) & 0x7F for i in range(AUDIO_PAYLOAD))
        self.audio_seq = random.getrandbits(16)
        self.audio_ts0 = random.getrandbits(32)
        self.audio_sent = 0
        self._audio_packets = 0
        self._audio_scheduled = 0
        self.seq = random.getrandbits(16)
        self.ts0 = random.getrandbits(32)
        self.frame = 0
        self.index = 0  # packet index inside the current frame
        self.key_pending = True
        # counters
        self.sent = 0
        self.bytes_sent = 0
        self.keyframes = 0
        self.plis = 0
        self.firs = 0
        self.nacks = 0
        self.rtcp_in = 0
        self.catchup_resets = 0
        self.max_lag = 0.0
        self._t0 = 0.0
        self._scheduled = 0  # packets due since _t0
        self._timer: Optional[asyncio.TimerHandle] = None
        self._next = 0.0

    async def start(self) -> None:
        await self._join()
        await self.publish()

    async def _join(self) -> None:
        await self.signaling.connect()
        await self.signaling.request({"type": "join", "room": self.room, "name": self.name,
                                      "auto_subscribe": False})

    async def publish(self) -> None:
        """Publish the track(s) on the joined session and start sending."""
        transceiver = self.transport.add_sendonly(
            "video", CodecInfo("video/VP8", 90000, 96), f"{self.name}-stream", f"{self.name}-video"
        )
        audio = None
        if self.audio_rate:
            audio = self.transport.add_sendonly(
                "audio", CodecInfo("audio/opus", 48000, 111, channels=2),
                f"{self.name}-stream", f"{self.name}-audio")
        offer = await self.transport.create_offer()
        mids = {transceiver.mid: "camera"}
        if audio is not None:
            mids[audio.mid] = "microphone"
        await self.transport.accept_answer(await self._negotiate(offer, mids))
        section = self.transport.sent_section(transceiver)
        if section is None:
            raise RuntimeError("publish answer did not negotiate the video m-line")
        self.payload_type = section.codec.payload_type
        self.ssrc = section.ssrcs[0]
        if audio is not None:
            section = self.transport.sent_section(audio)
            if section is None:
                raise RuntimeError("publish answer did not negotiate the audio m-line")
            self.audio_payload_type = section.codec.payload_type
            self.audio_ssrc = section.ssrcs[0]
        await wait_until(lambda: self.transport.connected, 20, "publisher transport connected")
        loop = asyncio.get_running_loop()
        self._t0 = self._next = loop.time()
        self._pace()
        self._sr_task = asyncio.ensure_future(self._sender_reports())

    async def _negotiate(self, offer: str, mids: dict[str, str]) -> str:
        """Publish ``offer`` (mid -> source) on the joined session; returns the answer."""
        response = await self.signaling.request({
            "type": "publish", "sdp": offer,
            "tracks": [{"mid": mid, "source": source} for mid, source in mids.items()],
        })
        return response["sdp"]

    # --- media ----------------------------------------------------------------

    def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.max_lag = max(self.max_lag, now - self._next)
        due = int((now - self._t0) * self.rate) - self._scheduled
        if due > self.rate * 0.2:  # stalled for > 200 ms: do not burst it all out
            self.catchup_resets += 1
            self._t0 = now - self._scheduled / self.rate
            due = 1
        self._scheduled += due
        send = self._send_one
        for _ in range(due):
            send()
        if self.audio_rate:
            audio_due = int((now - self._t0) * self.audio_rate) - self._audio_scheduled
            self._audio_scheduled += audio_due
            for _ in range(min(audio_due, 10)):
                self._send_audio()
        self._next += self.tick
        if self._next < now:
            self._next = now + self.tick
        self._timer = loop.call_at(self._next, self._pace)

    def _send_one(self) -> None:
        buf = self._buf
        index = self.index
        last = index == self.packets_per_frame - 1
        if index == 0:
            key = self.key_pending or self.frame % self.frames_per_key == 0
            if key:
                self.key_pending = False
                self.keyframes += 1
            buf[12] = 0x10
            buf[13:23] = KEY_HEADER if key else DELTA_HEADER
        elif index == 1:
            buf[12] = 0x00
            buf[13:23] = FILLER_HEADER
        ts = (self.ts0 + int(self.frame * self.ts_per_frame)) & 0xFFFFFFFF
        RTP_HEADER.pack_into(buf, 0, 0x80, (0x80 if last else 0) | self.payload_type,
                             self.seq, ts, self.ssrc)
        U64.pack_into(buf, 12 + TIME_OFFSET, time.monotonic_ns())
        if self.transport.send_rtp(bytes(buf)):
            self.sent += 1
            self.bytes_sent += len(buf)
        self.seq = (self.seq + 1) & 0xFFFF
        if last:
            self.index = 0
            self.frame += 1
        else:
            self.index = index + 1

    def _send_audio(self) -> None:
        """One Opus-sized packet (20 ms of 48 kHz), the send time at TIME_OFFSET."""
        buf = self._audio
        ts = (self.audio_ts0 + self._audio_packets * round(48000 / self.audio_rate)) & 0xFFFFFFFF
        self._audio_packets += 1
        RTP_HEADER.pack_into(buf, 0, 0x80, self.audio_payload_type, self.audio_seq, ts,
                             self.audio_ssrc)
        U64.pack_into(buf, 12 + TIME_OFFSET, time.monotonic_ns())
        if self.transport.send_rtp(bytes(buf)):
            self.sent += 1
            self.audio_sent += 1
            self.bytes_sent += len(buf)
        self.audio_seq = (self.audio_seq + 1) & 0xFFFF

    async def _sender_reports(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            ntp = (int(now + NTP_EPOCH) << 32) | int((now % 1) * (1 << 32))
            elapsed = asyncio.get_running_loop().time() - self._t0
            rtp_ts = (self.ts0 + int(elapsed * 90000)) & 0xFFFFFFFF
            self.transport.send_rtcp(rtcp.build_sr(self.ssrc, ntp, rtp_ts, self.sent,
                                                   self.bytes_sent - 12 * self.sent))

    def _on_rtcp(self, packet: bytes) -> None:
        for pt, fmt, _ in split_rtcp(packet):
            self.rtcp_in += 1
            if pt == RTCP_PSFB and fmt in (1, 4):  # PLI, FIR
                if fmt == 1:
                    self.plis += 1
                else:
                    self.firs += 1
                self.key_pending = True
            elif pt == RTCP_RTPFB and fmt == 1:
                self.nacks += 1

    def stats(self) -> dict:
        stats = {
            "sent": self.sent, "bytes": self.bytes_sent, "keyframes": self.keyframes,
            "plis": self.plis, "firs": self.firs, "nacks": self.nacks, "rtcp_in": self.rtcp_in,
            "send_errors": self.transport.send_errors, "catchup_resets": self.catchup_resets,
            "audio_sent": self.audio_sent,
            "max_lag_ms": round(self.max_lag * 1000, 2),
        }
        self.max_lag = 0.0
        return stats

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if getattr(self, "_sr_task", None) is not None:
            self._sr_task.cancel()
        await _quietly(self.signaling.close())
        await _quietly(self.transport.close())


class _Layer:
    """One simulcast layer (one SSRC) of SimulcastPublisherPeer."""

    def __init__(self, rid: str, rate: float, width: int, height: int, fps: float,
                 payload_size: int, keyframe_interval: float) -> None:
        self.rid = rid
        self.rate = rate
        self.width = width
        self.height = height
        self.ssrc = random.getrandbits(32) or 1
        self.seq = random.getrandbits(16)
        self.ts0 = random.getrandbits(32)
        self.packets_per_frame = max(1, round(rate / fps))
        self.frames_per_key = max(1, round(keyframe_interval * rate / self.packets_per_frame))
        self.ts_per_frame = 90000 * self.packets_per_frame / rate
        self.payload_size = max(MIN_PAYLOAD, payload_size)
        self.frame = 0
        self.index = 0
        self.key_pending = True
        self.picture_id = random.getrandbits(15)
        self.tl0 = random.getrandbits(8)
        self.tid_index = 0
        self.tid = 0
        self.ext_packets_left = 0  # packets still to carry the MID and RID extensions
        self.ext_block = b""
        self.scheduled = 0
        self.sent = 0
        self.bytes_sent = 0
        self.keyframes = 0
        self.plis = 0
        self.key_header = (bytes([0x50, 0x42, 0x00, 0x9D, 0x01, 0x2A])
                           + struct.pack("<HH", width, height))
        filler = bytes((i * 7 + 3) & 0xFF for i in range(self.payload_size))
        self.plain = bytearray(12) + bytearray(filler)  # no header extension
        self.with_ext = bytearray()  # set by start(): header + MID/RID extension + payload


class SimulcastPublisherPeer(PublisherPeer):
    """Publishes one VP8 track as three simulcast layers, the way Chromium does.

    The publish offer's video m-section carries ``a=rid:<rid> send`` lines and
    ``a=simulcast:send q;h;f`` and no ``a=ssrc`` lines: the server learns each
    layer's SSRC from the MID and RID header extensions of its first packets
    (sent on the first ``EXT_PACKETS`` packets of each SSRC, with the ids of
    the server's answer). Payloads carry a 6-byte VP8 descriptor (X=1, 15-bit
    picture ID, TL0PICIDX, TID in an L1T3 pattern); a key frame's first packet
    has the VP8 key frame header with the layer's size. A PLI for a layer's
    SSRC makes that layer's next frame a key frame.
    """

    EXT_PACKETS = 100

    def __init__(self, *args: Any, layers=DEFAULT_LAYERS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fps = kwargs.get("fps", 30.0)
        keyframe_interval = kwargs.get("keyframe_interval", 2.0)
        self.layers = [_Layer(rid, rate, w, h, fps, self.payload_size, keyframe_interval)
                       for rid, rate, w, h in layers]
        self.by_ssrc = {layer.ssrc: layer for layer in self.layers}
        self.rate = sum(layer.rate for layer in self.layers)
        self.ssrc = self.layers[-1].ssrc
        self.packets_per_frame = self.layers[-1].packets_per_frame
        self.unknown_plis = 0

    async def start(self) -> None:
        await self.signaling.connect()
        await self.signaling.request({"type": "join", "room": self.room, "name": self.name,
                                      "auto_subscribe": False})
        transceiver = self.transport.add_sendonly(
            "video", CodecInfo("video/VP8", 90000, 96), f"{self.name}-stream", f"{self.name}-video"
        )
        offer = await self.transport.create_offer()
        mid = transceiver.mid
        response = await self.signaling.request({
            "type": "publish", "sdp": simulcast_offer(offer, mid, [l.rid for l in self.layers]),
            "tracks": [{"mid": mid, "source": "camera"}],
        })
        await self.transport.accept_answer(response["sdp"])
        section = self.transport.sent_section(transceiver)
        if section is None:
            raise RuntimeError("publish answer did not negotiate the video m-line")
        self.payload_type = section.codec.payload_type
        ids = answer_extmap(response["sdp"], mid)
        mid_id, rid_id = ids.get(URI_MID), ids.get(URI_RID)
        if mid_id is None or rid_id is None:
            raise RuntimeError(f"publish answer lacks the MID or RID header extension: {ids}")
        if "a=simulcast:recv" not in response["sdp"]:
            raise RuntimeError("publish answer did not accept simulcast")
        for layer in self.layers:
            elements = (bytes([(mid_id << 4) | (len(mid) - 1)]) + mid.encode()
                        + bytes([(rid_id << 4) | (len(layer.rid) - 1)]) + layer.rid.encode())
            elements += bytes(-len(elements) % 4)
            layer.ext_block = struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements
            layer.with_ext = bytearray(12) + layer.ext_block + layer.plain[12:]
            layer.ext_packets_left = self.EXT_PACKETS
        await wait_until(lambda: self.transport.connected, 20, "publisher transport connected")
        loop = asyncio.get_running_loop()
        self._t0 = self._next = loop.time()
        self._pace()
        self._sr_task = asyncio.ensure_future(self._sender_reports())

    def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.max_lag = max(self.max_lag, now - self._next)
        elapsed = now - self._t0
        if int(elapsed * self.rate) - self._scheduled > self.rate * 0.2:  # stalled > 200 ms
            self.catchup_resets += 1
            self._t0 = now - self._scheduled / self.rate
            elapsed = now - self._t0
            for layer in self.layers:
                layer.scheduled = int(elapsed * layer.rate)
        # interleave the layers as an encoder would: one packet of each in turn
        dues = []
        for layer in self.layers:
            due = int(elapsed * layer.rate) - layer.scheduled
            layer.scheduled += due
            self._scheduled += due
            dues.append(due)
        send = self._send_layer
        while any(dues):
            for i, layer in enumerate(self.layers):
                if dues[i]:
                    dues[i] -= 1
                    send(layer)
        self._next += self.tick
        if self._next < now:
            self._next = now + self.tick
        self._timer = loop.call_at(self._next, self._pace)

    def _send_layer(self, layer: _Layer) -> None:
        size = send_vp8_layer(self.transport, layer, self.payload_type)
        if size:
            self.sent += 1
            self.bytes_sent += size

    async def _sender_reports(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            ntp = (int(now + NTP_EPOCH) << 32) | int((now % 1) * (1 << 32))
            elapsed = asyncio.get_running_loop().time() - self._t0
            packet = b""
            for layer in self.layers:
                rtp_ts = (layer.ts0 + int(elapsed * 90000)) & 0xFFFFFFFF
                packet += rtcp.build_sr(layer.ssrc, ntp, rtp_ts, layer.sent,
                                        layer.bytes_sent - 12 * layer.sent)
            self.transport.send_rtcp(packet)

    def _on_rtcp(self, packet: bytes) -> None:
        for pt, fmt, body in split_rtcp(packet):
            self.rtcp_in += 1
            if pt == RTCP_PSFB and fmt in (1, 4):  # PLI, FIR: a key frame of the layer asked
                if fmt == 1:
                    self.plis += 1
                    media = int.from_bytes(body[8:12], "big") if len(body) >= 12 else 0
                else:
                    self.firs += 1
                    media = int.from_bytes(body[12:16], "big") if len(body) >= 16 else 0
                layer = self.by_ssrc.get(media)
                if layer is None:
                    self.unknown_plis += 1
                    for layer in self.layers:
                        layer.key_pending = True
                else:
                    layer.plis += 1
                    layer.key_pending = True
            elif pt == RTCP_RTPFB and fmt == 1:
                self.nacks += 1

    def stats(self) -> dict:
        stats = super().stats()
        stats["keyframes"] = sum(layer.keyframes for layer in self.layers)
        stats["layers"] = {layer.rid: {"sent": layer.sent, "plis": layer.plis,
                                       "keyframes": layer.keyframes} for layer in self.layers}
        stats["unknown_plis"] = self.unknown_plis
        return stats


def send_vp8_layer(transport: PeerTransport, layer: _Layer, payload_type: int) -> int:
    """Send the next packet of a simulcast layer; its size, 0 if not sent."""
    if layer.ext_packets_left:
        layer.ext_packets_left -= 1
        buf, base, first = layer.with_ext, 12 + len(layer.ext_block), 0x90
    else:
        buf, base, first = layer.plain, 12, 0x80
    index = layer.index
    last = index == layer.packets_per_frame - 1
    if index == 0:
        key = layer.key_pending or layer.frame % layer.frames_per_key == 0
        if key:
            layer.key_pending = False
            layer.keyframes += 1
            layer.tid_index = 0
        layer.tid = TID_PATTERN[layer.tid_index % len(TID_PATTERN)]
        layer.tid_index += 1
        layer.picture_id = (layer.picture_id + 1) & 0x7FFF
        if layer.tid == 0:
            layer.tl0 = (layer.tl0 + 1) & 0xFF
        start = 0x10
        header = layer.key_header if key else DELTA_HEADER
    else:
        start = 0x00
        header = FILLER_HEADER
    pid = layer.picture_id
    # descriptor: X|S, then I L T, 15-bit picture ID, TL0PICIDX, TID (Y=1 on TID 0 frames)
    buf[base:base + 6] = bytes((0x80 | start, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, layer.tl0,
                                (layer.tid << 6) | (0x20 if layer.tid == 0 else 0)))
    if index <= 1:
        buf[base + 6:base + 16] = header
    ts = (layer.ts0 + int(layer.frame * layer.ts_per_frame)) & 0xFFFFFFFF
    RTP_HEADER.pack_into(buf, 0, first, (0x80 if last else 0) | payload_type,
                         layer.seq, ts, layer.ssrc)
    U64.pack_into(buf, base + TIME_OFFSET_EXT, time.monotonic_ns())
    size = 0
    if transport.send_rtp(bytes(buf)):
        size = len(buf)
        layer.sent += 1
        layer.bytes_sent += size
    layer.seq = (layer.seq + 1) & 0xFFFF
    if last:
        layer.index = 0
        layer.frame += 1
    else:
        layer.index = index + 1
    return size


def simulcast_offer(sdp: str, mid: str, rids: list[str]) -> str:
    """A browser-style simulcast offer: in the m-section of ``mid``, the RID
    header extensions, ``a=rid:<rid> send`` and ``a=simulcast:send``, and no
    ``a=ssrc``/``a=ssrc-group`` lines (the SSRCs are learnt from the packets)."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        if line:
            sections[-1].append(line)
    for lines in sections[1:]:
        if f"a=mid:{mid}" not in lines:
            continue
        lines[:] = [l for l in lines if not l.startswith(("a=ssrc:", "a=ssrc-group:"))]
        used = {int(l[9:].split()[0].split("/")[0]) for l in lines if l.startswith("a=extmap:")}
        at = next(i for i, l in enumerate(lines) if l.startswith("a=mid:"))
        for uri in (URI_RID, URI_REPAIRED_RID):
            if not any(l.endswith(" " + uri) for l in lines):
                free = next(i for i in range(1, 15) if i not in used)
                used.add(free)
                lines.insert(at, f"a=extmap:{free} {uri}")
                at += 1
        at = next(i for i, l in enumerate(lines) if l.startswith("a=mid:")) + 1
        lines[at:at] = [f"a=rid:{rid} send" for rid in rids] + ["a=simulcast:send " + ";".join(rids)]
    return "\r\n".join(line for lines in sections for line in lines) + "\r\n"


def answer_extmap(sdp: str, mid: str) -> dict[str, int]:
    """uri -> id of the header extensions in the m-section of ``mid`` of an SDP."""
    found: dict[str, int] = {}
    current = None
    section: list[str] = []
    for line in sdp.splitlines() + ["m=end"]:
        if line.startswith("m="):
            if current == mid:
                for l in section:
                    if l.startswith("a=extmap:"):
                        ident, uri = l[9:].split()[:2]
                        found[uri] = int(ident.split("/")[0])
                return found
            current, section = None, []
        elif line.startswith("a=mid:"):
            current = line[6:].strip()
        section.append(line)
    return found


class _Stream:
    __slots__ = ("ssrc", "base", "max_seq", "cycles", "received", "older",
                 "prior_expected", "prior_received", "last_sr", "last_sr_at")

    def __init__(self, ssrc: int, seq: int) -> None:
        self.ssrc = ssrc
        self.base = seq
        self.max_seq = seq
        self.cycles = 0
        self.received = 0
        self.older = 0  # reordered or duplicated packets
        self.prior_expected = 0
        self.prior_received = 0
        self.last_sr = 0
        self.last_sr_at = 0.0

    @property
    def expected(self) -> int:
        return self.cycles + self.max_seq - self.base + 1


def receiver_report(rtcp_ssrc: int, streams, now: float) -> bytes:
    """An RTCP RR for up to 31 received streams (_Stream), interval loss since the last one."""
    blocks = []
    for stream in list(streams)[:31]:
        expected = stream.expected
        interval_expected = expected - stream.prior_expected
        interval_lost = interval_expected - (stream.received - stream.prior_received)
        stream.prior_expected, stream.prior_received = expected, stream.received
        fraction = 0
        if interval_expected > 0 and interval_lost > 0:
            fraction = min(255, (interval_lost << 8) // interval_expected)
        dlsr = int((now - stream.last_sr_at) * 65536) if stream.last_sr else 0
        blocks.append(rtcp.ReportBlock(stream.ssrc, fraction, max(0, expected - stream.received),
                                       stream.cycles + stream.max_seq, 0, stream.last_sr, dlsr))
    return rtcp.build_rr(rtcp_ssrc, blocks)


class SubscriberPeer:
    """Receives everything the room publishes; counts, never decodes."""

    def __init__(self, url: str, room: str, ice: Optional[IceConfig] = None,
                 name: str = "subscriber") -> None:
        self.signaling = Signaling(url)
        self.room = room
        self.name = name
        self.transport = PeerTransport(
            ice or IceConfig(addresses=["127.0.0.1"], udp_port=0), self._on_rtp, self._on_rtcp
        )
        self.streams: dict[int, _Stream] = {}
        self.packets = 0
        self.bytes = 0
        self.latencies = array("q")
        self.late = Counter()  # packets later than LATE_US, by arrival slot (LATE_SLOT_NS)
        self.measured_from, self.measured_until = 0, 1 << 63  # send times whose latency counts
        self.srs = 0
        self.offers = 0
        self.first_media = asyncio.Event()
        self.started = time.monotonic()
        self.join_ms: Optional[float] = None
        self.rtcp_ssrc = random.getrandbits(32)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.started = time.monotonic()
        await self.signaling.connect()
        self._tasks.append(asyncio.ensure_future(self._answer_offers()))
        await self.signaling.request({"type": "join", "room": self.room, "name": self.name,
                                      "auto_subscribe": True})
        self._tasks.append(asyncio.ensure_future(self._receiver_reports()))

    async def _answer_offers(self) -> None:
        while True:
            event = await self.signaling.events.get()
            if event.get("type") == "subscriber_offer":
                self.offers += 1
                try:
                    answer = await self.transport.answer(event["sdp"])
                    await self.signaling.request({"type": "subscriber_answer", "sdp": answer})
                except Exception as exc:  # reported, and the run fails on no media
                    emit("error", message=f"subscriber offer not answered: {type(exc).__name__}: {exc}")
            elif event.get("type") == "leave":
                emit("error", message=f"server ended the session: {event.get('reason')}")

    # --- media ----------------------------------------------------------------

    def _on_rtp(self, p: bytes) -> None:
        now = time.monotonic_ns()
        size = len(p)
        b0 = p[0]
        offset = 12 + ((b0 & 0x0F) << 2)
        if b0 & 0x10:
            offset += 4 + (((p[offset + 2] << 8) | p[offset + 3]) << 2)
        seq, _, ssrc = SEQ_TS_SSRC.unpack_from(p, 2)
        stream = self.streams.get(ssrc)
        if stream is None:
            stream = self.streams[ssrc] = _Stream(ssrc, seq)
        else:
            delta = (seq - stream.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < stream.max_seq:
                    stream.cycles += 0x10000
                stream.max_seq = seq
            else:
                stream.older += 1
        stream.received += 1
        self.packets += 1
        self.bytes += size
        if size >= offset + MIN_PAYLOAD:
            at = offset + (TIME_OFFSET_EXT if p[offset] & 0x80 else TIME_OFFSET)
            sent = U64.unpack_from(p, at)[0]
            if self.measured_from <= sent < self.measured_until:
                latency = (now - sent) // 1000
                self.latencies.append(latency)
                if latency > LATE_US:
                    self.late[now // LATE_SLOT_NS] += 1
        if self.join_ms is None:
            self.join_ms = (time.monotonic() - self.started) * 1000
            self.first_media.set()

    def _on_rtcp(self, packet: bytes) -> None:
        for pt, _, body in split_rtcp(packet):
            if pt == RTCP_SR and len(body) >= 28:
                ssrc, ntp = struct.unpack_from("!IQ", body, 4)
                self.srs += 1
                stream = self.streams.get(ssrc)
                if stream is not None:
                    stream.last_sr = (ntp >> 16) & 0xFFFFFFFF
                    stream.last_sr_at = time.monotonic()

    async def _receiver_reports(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.transport.send_rtcp(receiver_report(self.rtcp_ssrc, self.streams.values(), time.monotonic()))

    def measure(self, sent_from: int, sent_until: int) -> None:
        """From now on, latency counts only for packets sent in [sent_from, sent_until)
        (monotonic ns): the benchmark asks for its window ahead and reads the
        histogram after it, so the peers' own work on stats, all at once on the
        generator's CPU, delays no packet that is counted."""
        self.latencies, self.late = array("q"), Counter()
        self.measured_from, self.measured_until = sent_from, sent_until

    def stats(self) -> dict:
        """Cumulative counters, and the latency histogram since the last call."""
        latencies, self.latencies = self.latencies, array("q")
        late, self.late = self.late, Counter()
        histogram = Counter(latency_bucket(v) for v in latencies)
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "expected": sum(s.expected for s in self.streams.values()),
            "received": sum(s.received for s in self.streams.values()),
            "older": sum(s.older for s in self.streams.values()),
            "ssrcs": len(self.streams),
            "srs": self.srs,
            "offers": self.offers,
            "srtp_errors": self.transport.srtp_errors,
            "join_ms": self.join_ms,
            "latency_count": len(latencies),
            "latency_hist": {str(k): v for k, v in histogram.items()},
            "late_slots": {str(k): v for k, v in late.items()},
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await _quietly(self.signaling.close())
        await _quietly(self.transport.close())


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _quietly(awaitable, timeout: float = 3.0) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout)
    except Exception:
        pass


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run_peer(args: argparse.Namespace) -> int:
    ice = IceConfig(addresses=[args.ice_address], udp_port=0)  # a client: a socket per connection
    if args.role == "publisher" and args.simulcast:
        rates = [float(r) for r in args.layer_rates.split(",")]
        if len(rates) != len(DEFAULT_LAYERS):
            raise SystemExit(f"--layer-rates needs {len(DEFAULT_LAYERS)} rates")
        layers = [(rid, rate, w, h) for (rid, _, w, h), rate in zip(DEFAULT_LAYERS, rates)]
        peer: Any = SimulcastPublisherPeer(args.url, args.room, sum(rates), fps=args.fps,
                                           payload_size=args.payload_size,
                                           keyframe_interval=args.keyframe_interval, ice=ice,
                                           name=args.name, layers=layers)
    elif args.role == "publisher":
        publisher_class = PublisherPeer
        if args.sfu == "janus":
            from .janus import JanusPublisherPeer as publisher_class
        peer = publisher_class(args.url, args.room, args.rate, fps=args.fps,
                               payload_size=args.payload_size,
                               keyframe_interval=args.keyframe_interval, ice=ice, name=args.name,
                               audio_rate=args.audio_rate)
    else:
        subscriber_class = SubscriberPeer
        if args.sfu == "janus":
            from .janus import JanusSubscriberPeer as subscriber_class
        peer = subscriber_class(args.url, args.room, ice=ice, name=args.name)
    stdin = await _stdin_lines()
    deadline = time.monotonic() + args.max_seconds
    try:
        await asyncio.wait_for(peer.start(), args.setup_timeout)
        if args.role == "publisher":
            emit("ready", pid=os.getpid(), ssrc=peer.ssrc, payload_type=peer.payload_type,
                 packets_per_frame=peer.packets_per_frame)
        else:
            await asyncio.wait_for(peer.first_media.wait(), args.setup_timeout)
            emit("media", pid=os.getpid(), join_ms=round(peer.join_ms, 1))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                emit("error", message="max-seconds reached")
                return 2
            try:
                line = await asyncio.wait_for(stdin.readline(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                if peer.signaling.closed.is_set():
                    emit("error", message="signaling connection closed")
                    return 3
                continue
            command = line.decode().strip()
            if not line or command == "quit":
                return 0
            if command.startswith("measure ") and hasattr(peer, "measure"):
                peer.measure(*(int(v) for v in command.split()[1:3]))
            elif command == "stats":
                emit("stats", **peer.stats())
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        await peer.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=["publisher", "subscriber"])
    parser.add_argument("--url", required=True, help="signaling URL, e.g. ws://127.0.0.1:7880/ws "
                        "(--sfu janus: the Janus HTTP API, e.g. http://127.0.0.1:8088/janus)")
    parser.add_argument("--sfu", choices=["pysfu", "janus"], default="pysfu",
                        help="pysfu's WebSocket signaling or Janus VideoRoom (benchmarks.janus)")
    parser.add_argument("--room", default="bench")
    parser.add_argument("--name", default="")
    parser.add_argument("--rate", type=float, default=1000, help="publisher: RTP packets per second")
    parser.add_argument("--fps", type=float, default=30, help="publisher: frames per second")
    parser.add_argument("--audio-rate", type=float, default=0,
                        help="publisher: also an Opus audio m-line at this many packets/s (0: none)")
    parser.add_argument("--payload-size", type=int, default=1100, help="publisher: RTP payload bytes")
    parser.add_argument("--keyframe-interval", type=float, default=2.0, help="publisher: seconds")
    parser.add_argument("--simulcast", action="store_true",
                        help="publisher: three VP8 simulcast layers q, h, f (rid, as Chromium sends)")
    parser.add_argument("--layer-rates", default=",".join(f"{r:g}" for _, r, _, _ in DEFAULT_LAYERS),
                        help="publisher with --simulcast: packets/s of q,h,f (default 150,300,550)")
    parser.add_argument("--ice-address", default="127.0.0.1")
    parser.add_argument("--setup-timeout", type=float, default=60)
    parser.add_argument("--max-seconds", type=float, default=900, help="hard lifetime of the peer")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--log-level", default="warning")
    return parser


def main(argv: Optional[list[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    args.name = args.name or f"{args.role}-{os.getpid()}"
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.no_uvloop:
        code = asyncio.run(run_peer(args))
    else:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            code = runner.run(run_peer(args))
    sys.exit(code)


if __name__ == "__main__":
    main()
