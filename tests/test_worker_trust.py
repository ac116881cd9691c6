"""`--workers`: what a worker believes comes only from its peers. The relay
link takes media only from the worker the track was agreed with, and a
worker's HTTP port believes X-Forwarded-For only from the front."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
from aiohttp import web

from sfu.config import SfuConfig
from sfu.media_section import CodecInfo
from sfu.published_track import PublishedTrack
from sfu.relay import NACK, PREFIX, RTP, WISH, RelayLink
from sfu.rtp import HEADER
from sfu.stream_reader import ReceivedPacket
from signaling.app import create_app

from .conftest import LocalServer, loopback_config
from .waiting import eventually


def video_track() -> PublishedTrack:
    return PublishedTrack("TR_relayed", "PA_owner", "video", "", CodecInfo("video/VP8", 90000, 96), "camera")


def rtp_packet(ssrc: int, seq: int) -> bytes:
    return HEADER.pack(0x80, 96, seq, seq * 3000, ssrc) + b"\x10\x00" + bytes(100)


async def test_relay_takes_media_and_requests_only_from_the_agreed_worker():
    a, b = RelayLink(SfuConfig()), RelayLink(SfuConfig())
    await a.start()
    await b.start()
    try:
        published = video_track()
        feed = b.open_feed(video_track(), a.port)  # B expects the track from A ...
        sink = a.open_sink(published, b.port, feed.number, "room")  # ... and A sends it to B
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as lookalike:
            stranger.bind(("127.0.0.1", 0))
            lookalike.bind(("127.0.0.2", b.port))  # B's port, on another loopback address
            stranger.sendto(PREFIX.pack(RTP, 0, feed.number) + rtp_packet(0xBAD, 1), ("127.0.0.1", b.port))
            lookalike.sendto(PREFIX.pack(WISH, 0, feed.number), ("127.0.0.1", a.port))  # "pause it"
            lookalike.sendto(PREFIX.pack(NACK, 0, feed.number) + b"\x00\x01", ("127.0.0.1", a.port))
        sink.write(ReceivedPacket(rtp_packet(0x600D, 2), b"", 2, 6000, 12, True, 0.0))  # the agreed worker's packet
        await eventually(lambda: feed.track.layers[0] is not None and feed.track.layers[0].ssrc == 0x600D,
                         timeout=5)
        assert b.packets_received == 1  # the stranger's RTP (ahead in B's socket) was not taken
        await eventually(lambda: (getattr(a, "refused", 0), getattr(b, "refused", 0)) == (2, 1), timeout=5,
                         message="the stranger's datagrams were not refused")
        assert sink.desired == 0  # the lookalike's wish did not pause the layer
    finally:
        a.close()
        b.close()


async def start_worker_app(joins_per_minute: int, secret: str | None) -> LocalServer:
    """A worker's app as signaling/scaling/worker.py builds it (without its supervisor)."""
    from signaling.app import FRONT_SECRET  # noqa: PLC0415 (new with this check)

    app = create_app(loopback_config(limits={"joins_per_minute": joins_per_minute}, worker_index=0))
    if secret is not None:
        app[FRONT_SECRET] = secret
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return LocalServer(app, runner, site._server.sockets[0].getsockname()[1])


async def join_with_headers(url: str, headers: dict[str, str], name: str) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, headers=headers) as ws:
            await ws.send_str(json.dumps({"type": "join", "id": 1, "room": "trust", "name": name}))
            while True:
                message = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                if message.get("id") == 1:
                    return message


async def joins_accepted(url: str, headers_of) -> list[str]:
    return [(await join_with_headers(url, headers_of(i), f"p{i}"))["type"] for i in range(3)]


async def test_forwarded_for_from_a_local_process_does_not_bypass_join_limits():
    app = create_app(loopback_config(limits={"joins_per_minute": 2}, worker_index=0))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/ws"
    try:
        results = await joins_accepted(url, lambda i: {"X-Forwarded-For": f"198.51.100.{i}"})
        assert results == ["join_response", "join_response", "error"]
    finally:
        await runner.cleanup()


async def test_forwarded_for_is_believed_with_the_front_secret_only():
    worker = await start_worker_app(joins_per_minute=2, secret="front-secret")
    try:
        front = await joins_accepted(worker.url, lambda i: {"X-Forwarded-For": f"198.51.100.{i}",
                                                            "X-Pysfu-Front": "front-secret"})
        assert front == ["join_response"] * 3  # three clients behind the front, one join each
        guessed = await joins_accepted(worker.url, lambda i: {"X-Forwarded-For": f"203.0.113.{i}",
                                                              "X-Pysfu-Front": "guess"})
        assert guessed == ["join_response", "join_response", "error"]  # all counted as 127.0.0.1
    finally:
        await worker.runner.cleanup()
