"""A subscriber that never decodes: it answers the server's offers with a
bare PeerTransport, reads key frame sizes from the RTP it receives (where
the codec's header tells them, as VP8's does), and can report any REMB it
is told to. Used to drive bandwidth-based layer selection from a test."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Optional

import aiohttp

from sfu import rtcp
from sfu.codecs import CodecHandler, handler
from sfu.config import IceConfig
from sfu.rtp import payload_offset
from sfu.transport import PeerTransport


class RawSubscriber:
    def __init__(self, url: str) -> None:
        self.url = url
        self.transport = PeerTransport(IceConfig(addresses=["127.0.0.1"], udp_port=0), self._on_rtp, lambda p: None)
        self.events: list[dict] = []
        self.frame_sizes: list[tuple[float, int, int]] = []  # (time, width, height) per key frame
        self.video_packets = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._session: Optional[aiohttp.ClientSession] = None
        self._ws = None
        self._tasks: list[asyncio.Task] = []
        self._remb: Optional[int] = None
        self._ssrcs: set[int] = set()
        self._video_codecs: dict[int, CodecHandler] = {}  # payload type -> handler
        self._pli_sent = 0.0
        #: Sequence numbers received, per SSRC, in arrival order (any kind).
        self.seqs: dict[int, list[int]] = {}
        #: False: a client that leaves the server's offers unanswered.
        self.answering = True

    async def join(self, room: str, **extra) -> dict:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url)
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._report())]
        return await self.request({"type": "join", "room": room, "name": "raw", **extra})

    async def request(self, message: dict) -> dict:
        message = {**message, "id": next(self._ids)}
        future = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        await self._ws.send_str(json.dumps(message))
        response = await asyncio.wait_for(future, 10)
        if response["type"] == "error":
            raise RuntimeError(response["code"])
        return response

    def report_remb(self, bitrate: Optional[int]) -> None:
        self._remb = bitrate

    @property
    def width(self) -> int:
        return self.frame_sizes[-1][1] if self.frame_sizes else 0

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if data.get("id") in self._pending:
                self._pending.pop(data["id"]).set_result(data)
                continue
            self.events.append({**data, "at": time.monotonic()})
            if data["type"] == "subscriber_offer" and self.answering:
                answer = await self.transport.answer(data["sdp"])
                self._video_codecs = {
                    s.codec.payload_type: handler(s.codec.name)
                    for s in self.transport.received_sections() if s.kind == "video"
                }
                asyncio.ensure_future(self.request({"type": "subscriber_answer", "sdp": answer}))

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            if self._remb is not None and self._ssrcs:
                self.transport.send_rtcp(rtcp.build_remb(0x5EB, self._remb, sorted(self._ssrcs)))
            self._ask_for_keyframe()

    def _ask_for_keyframe(self) -> None:
        """Like a browser that has no picture: PLI while video comes but the key
        frame of the layer last switched to did not (lost on a busy loopback,
        or sent before our DTLS was up)."""
        switches = [e for e in self.events if e["type"] == "layer_changed"]
        if not switches or switches[-1].get("width") in (None, 0, self.width):
            return
        now = time.monotonic()
        if now - switches[-1]["at"] > 0.5 and now - self._pli_sent > 0.5:
            self._pli_sent = now
            for ssrc in self._ssrcs:
                self.transport.send_rtcp(rtcp.build_pli(0x5EB, ssrc))

    def _on_rtp(self, packet: bytes) -> None:
        offset = payload_offset(packet)
        self.seqs.setdefault(int.from_bytes(packet[8:12], "big"), []).append(
            int.from_bytes(packet[2:4], "big"))
        codec = self._video_codecs.get(packet[1] & 0x7F)
        if offset < 0 or codec is None:
            return
        self._ssrcs.add(int.from_bytes(packet[8:12], "big"))
        self.video_packets += 1
        size = codec.frame_size(packet, offset)
        if size is not None:
            self.frame_sizes.append((time.monotonic(), *size))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        await self.transport.close()
