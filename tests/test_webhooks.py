"""Webhooks delivered to a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from signaling.auth import VideoGrant, create_token
from signaling.client import Client
from signaling.webhooks import verify

from .conftest import API_KEY, API_SECRET, KEYS, LOOPBACK, eventually, free_port
from .media import ToneAudioTrack


class Receiver:
    """An aiohttp server recording every POST; fails or stalls on demand."""

    def __init__(self, fail_first: int = 0, delay: float = 0) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        self.delay = delay
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        await asyncio.sleep(self.delay)
        if len(self.received) <= self.fail_first:
            return web.Response(status=500)
        return web.Response(status=200)

    async def __aenter__(self) -> "Receiver":
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]


def join_token(identity: str, room: str) -> str:
    return create_token(API_KEY, API_SECRET, identity, VideoGrant(room=room, roomJoin=True))


async def test_short_call_signed_in_order_and_retried_after_500(make_server):
    async with Receiver(fail_first=1) as receiver:
        server = await make_server(keys=KEYS, webhooks={"urls": [receiver.url], "backoff": 0.05})
        async with Client(server.url, ice_addresses=LOOPBACK) as alice:
            await alice.join("call", "alice", token=join_token("alice", "call"))
            await alice.publish([ToneAudioTrack()])
            await alice.leave()
        await eventually(lambda: len({e["id"] for e in receiver.events()}) >= 6, timeout=5)

        for headers, body in receiver.received:
            assert headers["X-Pysfu-Key"] == API_KEY
            assert verify(body, headers["X-Pysfu-Signature"], API_SECRET)
            assert not verify(body, headers["X-Pysfu-Signature"], KEYS["second-key"])
        events = receiver.events()
        assert events[0]["id"] == events[1]["id"], "the event answered with 500 was not sent again"
        deduplicated = [e for i, e in enumerate(events) if i == 0 or e["id"] != events[i - 1]["id"]]
        assert [e["event"] for e in deduplicated] == [
            "room_started", "participant_joined", "track_published",
            "track_unpublished", "participant_left", "room_finished",
        ]
        assert {e["room"]["name"] for e in events} == {"call"}
        assert deduplicated[1]["participant"]["identity"] == "alice"
        assert deduplicated[2]["track"]["kind"] == "audio"


async def test_slow_receiver_does_not_hold_up_signaling(make_server):
    async with Receiver(delay=1) as receiver:
        server = await make_server(keys=KEYS, webhooks={"urls": [receiver.url]})
        async with Client(server.url, ice_addresses=LOOPBACK) as client:
            started = time.monotonic()
            await client.join("slow", "a", token=join_token("a", "slow"))
            for _ in range(5):
                await client.request({"type": "ping"})
            assert time.monotonic() - started < 0.5
            await eventually(lambda: receiver.received, timeout=3)


def test_webhooks_need_keys_to_sign():
    from signaling.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="configure keys"):
        load_config({"webhooks": {"urls": ["http://127.0.0.1:1/hook"]}}, env={})
