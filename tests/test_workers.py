"""`pysfu serve --workers N` (issue 7): one room spread over two worker
processes, relay links carrying each stream once, and a crashed worker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import aiohttp
import pytest

from benchmarks.peers import PublisherPeer, SubscriberPeer
from signaling.client import Client
from sfu.config import IceConfig, SfuConfig
from signaling.config import ServerConfig
from signaling.scaling.supervisor import Supervisor, Worker, place, split_port_range

from .conftest import LOOPBACK, start_server_process, stop_server_process
from .processes import child_pids
from .prometheus import scrape
from .waiting import eventually

pytestmark = pytest.mark.slow  # worker processes

PARTICIPANTS = 20
RATE = 20  # packets/s each participant publishes


class MeetingPeer(PublisherPeer):
    """A cheap participant: one session that publishes a video track and
    receives everyone else's (counting packets, never decoding)."""

    def __init__(self, url: str, room: str, name: str) -> None:
        super().__init__(url, room, rate=RATE, fps=10, name=name)
        self.inbox = SubscriberPeer(url, room, name=name)
        self.inbox.signaling = self.signaling

    async def start(self) -> None:
        await self.inbox.start()  # joins with auto_subscribe and answers offers
        await self.publish()

    def received(self) -> dict[int, int]:
        return {ssrc: stream.received for ssrc, stream in self.inbox.streams.items()}

    async def close(self) -> None:
        await self.inbox.close()
        await super().close()


def per_worker(samples: dict[str, float], name: str, kind: str = "") -> dict[str, float]:
    values = {}
    for key, value in samples.items():
        match = re.fullmatch(rf'{name}\{{worker="(\d+)"(?:,kind="(\w+)")?\}}', key)
        if match and (not kind or match.group(2) == kind):
            values[match.group(1)] = value
    return values


def test_placement_fills_a_worker_to_the_room_limit_then_spreads():
    workers = [Worker(i, None) for i in range(2)]
    for worker in workers:
        worker.ready.set()
    chosen = []
    for _ in range(4):
        worker = place("big", workers, room_limit=2)
        worker.sessions["big"] += 1
        chosen.append(worker.index)
    assert chosen == [0, 0, 1, 1]
    assert place("other", workers, room_limit=2).index in (0, 1)
    workers[0].ready.clear()
    assert place("big", workers, room_limit=2).index == 1  # a dead worker gets nobody


def test_each_worker_gets_its_own_udp_port():
    config = ServerConfig(sfu=SfuConfig(ice=IceConfig(udp_port=7882)))
    assert [w.config.sfu.ice.udp_port for w in Supervisor(config, 3).workers] == [7882, 7883, 7884]
    config = ServerConfig(sfu=SfuConfig(ice=IceConfig(port_min=50000, port_max=50099)))
    ices = [w.config.sfu.ice for w in Supervisor(config, 2).workers]
    assert [(ice.udp_port, ice.port_min, ice.port_max) for ice in ices] == [(0, 50000, 50049), (0, 50050, 50099)]
    with pytest.raises(ValueError, match="65535"):
        Supervisor(ServerConfig(sfu=SfuConfig(ice=IceConfig(udp_port=65535))), 2)


def test_port_range_is_split_between_workers():
    assert split_port_range(50000, 50099, 2) == [(50000, 50049), (50050, 50099)]
    assert split_port_range(0, 0, 3) == [(0, 0)] * 3
    with pytest.raises(ValueError):
        split_port_range(50000, 50002, 2)


async def test_room_of_twenty_spans_two_workers_and_relays_each_stream_once():
    server = start_server_process(["--workers", "2", "--worker-room-limit", str(PARTICIPANTS // 2)])
    peers = [MeetingPeer(server.url, "big", f"p{i}") for i in range(PARTICIPANTS)]
    try:
        for peer in peers:  # one at a time: a busy machine sets up 40 PCs slowly
            await asyncio.wait_for(peer.start(), 30)
        others = PARTICIPANTS - 1
        await eventually(lambda: all(len(p.received()) == others for p in peers), timeout=40,
                         message="not everyone receives everyone")

        before = await scrape(server.http)
        counts_before = [p.received() for p in peers]
        await asyncio.sleep(3)
        after = await scrape(server.http)
        counts_after = [p.received() for p in peers]

        # subscribers (and publishers) are spread: half the room on each worker
        assert per_worker(after, "pysfu_participants") == {"0": 10.0, "1": 10.0}
        # everyone receives everyone, and keeps receiving
        for name, first, last in zip((p.name for p in peers), counts_before, counts_after):
            assert len(last) == others, f"{name} receives {len(last)} streams"
            slow = {ssrc: last[ssrc] - first.get(ssrc, 0) for ssrc in last if last[ssrc] - first.get(ssrc, 0) < RATE}
            assert not slow, f"{name}: streams with < {RATE} packets in 3 s: {slow}"
        # each worker relays each of its 10 tracks once, to the one other worker
        assert per_worker(after, "pysfu_relay_tracks_sent") == {"0": 10.0, "1": 10.0}
        assert per_worker(after, "pysfu_relay_tracks_received") == {"0": 10.0, "1": 10.0}
        for worker in ("0", "1"):
            received = (per_worker(after, "pysfu_packets_in_total", "video")[worker]
                        - per_worker(before, "pysfu_packets_in_total", "video")[worker])
            relayed = (per_worker(after, "pysfu_relay_packets_sent_total")[worker]
                       - per_worker(before, "pysfu_relay_packets_sent_total")[worker])
            assert received > 3 * RATE * 10 * 0.7, f"worker {worker} got only {received} packets"
            # once per stream: ~1x what the worker received, not 10x (one per subscriber)
            assert 0.8 < relayed / received < 1.2, f"worker {worker}: relayed {relayed} of {received} received"
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        stop_server_process(server)


def event_of(client: Client, kind: str):
    return next((e for e in client.events if e["type"] == kind), None)


async def health(port: int) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            return await response.json()


async def test_crashed_worker_restarts_and_its_clients_are_told_to_rejoin():
    server = start_server_process(["--workers", "2", "--worker-room-limit", "1"])
    alice, bob = Client(server.url, LOOPBACK), Client(server.url, LOOPBACK)
    try:
        await alice.connect()
        await bob.connect()
        await alice.join("crash", "alice")
        await bob.join("crash", "bob")  # limit 1: bob is on the other worker
        await eventually(lambda: len(child_pids(server.proc.pid)) == 2, timeout=10)
        samples = await scrape(server.http)
        assert per_worker(samples, "pysfu_participants") == {"0": 1.0, "1": 1.0}
        await eventually(lambda: [p.get("name") for p in bob.roster.values()] == ["alice"], timeout=10,
                         message="bob does not see alice across workers")

        victim = child_pids(server.proc.pid)[1]  # started second: worker 1, bob's
        os.kill(victim, signal.SIGKILL)
        leave = await eventually(lambda: event_of(bob, "leave"), timeout=10)
        assert leave["reason"] == "worker_restarted"
        left = await eventually(lambda: event_of(alice, "participant_left"), timeout=10)
        assert left["reason"] == "worker_restarted"  # alice's worker forgot bob

        deadline = time.monotonic() + 20
        while (await health(server.port))["workers_alive"] != 2:
            assert time.monotonic() < deadline, "the worker was not restarted"
            await asyncio.sleep(0.2)
        assert victim not in child_pids(server.proc.pid)
        samples = await scrape(server.http)
        assert samples["pysfu_worker_restarts_total"] == 1

        bob2 = Client(server.url, LOOPBACK)  # what a client does on worker_restarted
        try:
            await bob2.connect()
            await bob2.join("crash", "bob")
            # the other worker's participants arrive as participant_joined events
            await eventually(lambda: [p.get("name") for p in bob2.roster.values()] == ["alice"], timeout=10,
                             message="the rejoined bob does not see alice")
            await eventually(lambda: [e for e in alice.events if e["type"] == "participant_joined"][1:],
                             timeout=10, message="alice does not see bob back")
        finally:
            await bob2.close()
    finally:
        await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)
        stop_server_process(server)


async def test_the_front_answers_before_join_with_the_protocol_messages_a_worker_sends():
    """Before ``join`` the front answers by itself; it echoes an id by the
    same rule as a worker (a valid one, else none) and says ``leave`` alike."""
    server = start_server_process(["--workers", "2"])
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.url) as ws:
            await ws.send_json({"type": "ping", "id": 7})
            assert await ws.receive_json() == {"type": "pong", "id": 7}
            await ws.send_json({"type": "subscribe", "id": "x" * 65, "track_ids": ["TR_a"]})
            assert await ws.receive_json() == {"type": "error", "code": "not_joined", "message": "join a room first"}
            await ws.send_json({"type": "subscribe", "id": "s1", "track_ids": ["TR_a"]})
            assert (await ws.receive_json())["id"] == "s1"
            await ws.send_str("{")
            error = await ws.receive_json()
            assert (error["code"], "id" in error) == ("bad_json", False)
    finally:
        stop_server_process(server)
