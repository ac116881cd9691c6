"""Every limit hit on purpose: its error code, and the connection or server
keeps working."""

from __future__ import annotations

import asyncio
import json

import pytest

from signaling.client import ClientError
from signaling.limits import JoinLimiter, TokenBucket

from .media import PatternVideoTrack, ToneAudioTrack
from .waiting import eventually


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_burst_then_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.5
    assert [bucket.take(), bucket.take()] == [True, False]


def test_join_limiter_window_is_per_address():
    clock = FakeClock()
    joins = JoinLimiter(per_minute=2, clock=clock)
    assert [joins.allow("a"), joins.allow("a"), joins.allow("a")] == [True, True, False]
    assert joins.allow("b")
    clock.now = 60.5
    assert joins.allow("a")


def _errors(client, code: str) -> list[dict]:
    return [e for e in client.events if e["type"] == "error" and e["code"] == code]


async def test_message_too_large_keeps_the_connection(server, clients):
    client = await clients()
    await client.join("big", "a")
    await client.send_raw(json.dumps({"type": "ping", "id": 99, "pad": "x" * 300_000}))
    await eventually(lambda: _errors(client, "message_too_large"), timeout=5)
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    assert len(server.rooms.rooms["big"].participants) == 1


async def test_messages_per_second(make_server):
    server = await make_server(limits={"messages_per_second": 5, "message_burst": 5})
    async with server.client() as client:
        for n in range(20):
            await client.send_raw(json.dumps({"type": "ping", "id": f"flood{n}"}))
        await eventually(lambda: len(_errors(client, "rate_limited")) >= 10, timeout=5)
        limited = _errors(client, "rate_limited")
        assert all(e["id"].startswith("flood") for e in limited), "errors must name the refused request"
        await asyncio.sleep(0.5)
        assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_sdp_size(make_server):
    server = await make_server(limits={"max_sdp_bytes": 1024})
    async with server.client() as client:
        await client.join("sdp", "a")
        with pytest.raises(ClientError) as caught:
            await client.publish([ToneAudioTrack(), PatternVideoTrack()])
        assert caught.value.code == "sdp_too_large"
        assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_joins_per_address_per_minute(make_server):
    server = await make_server(limits={"joins_per_minute": 2})
    async with server.client() as a, server.client() as b, server.client() as c:
        await a.join("busy", "a")
        await b.join("busy", "b")
        with pytest.raises(ClientError) as caught:
            await c.join("busy", "c")
        assert caught.value.code == "too_many_joins"
        assert (await a.request({"type": "ping"}))["type"] == "pong"
        assert len(server.rooms.rooms["busy"].participants) == 2


async def test_room_capacity(make_server):
    server = await make_server(limits={"room_capacity": 2})
    async with server.client() as a, server.client() as b, server.client() as c:
        await a.join("small", "a")
        await b.join("small", "b")
        with pytest.raises(ClientError) as caught:
            await c.join("small", "c")
        assert caught.value.code == "room_full"
        await c.join("other", "c")  # the same socket may still join elsewhere
        assert len(server.rooms.rooms["small"].participants) == 2
