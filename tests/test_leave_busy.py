"""Everyone who leaves is gone at once, even when the server is seconds
behind: a clean close of the socket is a leave, and a ``leave`` or a clean
close that the server reads only after it saw the peer connections close
still ends the participant (not ``reconnecting`` for the resume grace)."""

from __future__ import annotations

import pytest

import asyncio
import json
import os
import re
import signal
import time
import urllib.request

from .conftest import start_server_process, stop_server_process
from .media import ToneAudioTrack
from signaling.client import Client

pytestmark = pytest.mark.slow  # a server process stopped and resumed

CLIENTS = 10
ROOM = "busy"
#: Far under the 20 s resume grace: a participant kept as reconnecting fails.
#: Counted from when every client is done going, so a slow test process does
#: not eat into it.
BOUND = 8.0
STALL = 2.0  # seconds the server process is stopped while everyone goes


def participants(server) -> int:
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^pysfu_participants (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


async def still_in_room(server) -> list[str]:
    """Who a newcomer finds in the room, and in what state ("p7 reconnecting")."""
    observer = Client(server.url, ice_addresses=["127.0.0.1"])
    try:
        await observer.connect()
        joined = await observer.join(ROOM, "observer")
        return [f"{p['name']} {p['state']}" for p in joined["participants"]]
    finally:
        await observer.close()


async def leave_then_close_pcs(client: Client) -> None:
    """As loadgen's peers do when the leave's answer is slow: leave, close the
    PCs (their DTLS close reaches the server too), then the socket."""
    await client.send_raw(json.dumps({"type": "leave", "id": "bye"}))
    await client.publisher.close()
    await client.subscriber.close()
    await client.close()


async def test_room_empties_when_all_go_while_the_server_is_behind():
    # info logs: a failure shows, with the server's output, the path each participant took
    server = start_server_process(["--log-level", "info"])
    clients = [Client(server.url, ice_addresses=["127.0.0.1"]) for _ in range(CLIENTS)]
    try:
        for index, client in enumerate(clients):
            await client.connect()
            await client.join(ROOM, f"p{index}")
            await client.publish([ToneAudioTrack()])
        await asyncio.gather(*(c.wait_tracks(CLIENTS - 1, timeout=30) for c in clients))
        assert await asyncio.to_thread(participants, server) == CLIENTS

        os.kill(server.proc.pid, signal.SIGSTOP)  # the server falls seconds behind
        try:
            half = CLIENTS // 2
            going = [leave_then_close_pcs(c) for c in clients[:half]]  # leave, then PCs close
            going += [c.close() for c in clients[half:]]  # a clean close, no leave
            gone = asyncio.gather(*going, return_exceptions=True)
            await asyncio.sleep(STALL)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        await asyncio.wait_for(gone, 60)  # p0-p4 left, p5-p9 closed cleanly: nobody may resume
        deadline = time.monotonic() + BOUND
        while (left := await asyncio.to_thread(participants, server)) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if left:
            stayed = await still_in_room(server)
            raise AssertionError(f"{left} participants still counted {BOUND} s after everyone went: {stayed}")
    finally:
        for client in clients:
            await client.close()
        stop_server_process(server)
