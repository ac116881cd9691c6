"""Health and readiness, and draining an in-process app."""

from __future__ import annotations

import aiohttp
import pytest

from signaling.app import drain
from signaling.client import ClientError

from .waiting import eventually


async def _status(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            return response.status, await response.json()


async def test_draining_is_not_ready_and_refuses_joins(server, clients):
    assert await _status(f"{server.http}/readyz") == (200, {"status": "ready"})
    member = await clients()
    await member.join("room", "member")
    late = await clients()

    await drain(server.app, grace=1)

    assert await _status(f"{server.http}/readyz") == (503, {"status": "draining"})
    assert await _status(f"{server.http}/healthz") == (200, {"status": "ok"})
    assert [e["reason"] for e in member.events if e["type"] == "leave"] == ["server_shutdown"]
    await eventually(lambda: member.closed.is_set(), timeout=2)
    with pytest.raises(ClientError) as caught:
        await late.join("room", "late")
    assert caught.value.code == "server_draining"
