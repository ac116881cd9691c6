"""Many nodes through Redis (issue 7): clients that join one room through
different nodes meet on the node that owns it, the admin API answers the
same from every node, and a room whose node dies starts again elsewhere.

In-process nodes for the details; two `pysfu serve` processes and a real
redis-server for the whole story, SIGKILL included."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import jwt
import pytest
from aiohttp import web

from signaling.app import create_app
from signaling.auth import VideoGrant, create_token
from signaling.client import Client
from signaling.config import Cluster as ClusterSettings

from .conftest import (
    API_KEY, API_SECRET, KEYS, LOOPBACK, free_port, join_token, loopback_config, start_server_process,
    stop_server_process,
)
from .media import PatternVideoTrack
from .waiting import eventually, eventually_async
from .redis_server import redis_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # node processes sharing Redis

ADMIN = create_token(API_KEY, API_SECRET, "ops", VideoGrant(roomAdmin=True, roomCreate=True, roomList=True))


class Node:
    """A pysfu server in this process, member of the cluster."""

    def __init__(self, runner: web.AppRunner, port: int, node_id: str) -> None:
        self.runner = runner
        self.id = node_id
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.http = f"http://127.0.0.1:{port}"


@pytest.fixture
async def cluster_nodes(redis_server):
    """Start in-process nodes sharing ``redis_server``."""
    started: list[Node] = []

    async def start(node_id: str, **settings) -> Node:
        port = free_port()
        cluster = ClusterSettings(redis_url=redis_server.url, node_id=node_id, url=f"ws://127.0.0.1:{port}/ws",
                                  heartbeat=1, ttl=5)
        runner = web.AppRunner(create_app(loopback_config(cluster=cluster, **settings)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started.append(Node(runner, port, node_id))
        return started[-1]

    yield start
    for node in started:
        await node.runner.cleanup()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def api(http: aiohttp.ClientSession, node, method: str, path: str, body=None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with http.request(method, node.http + path, json=body, headers=headers) as response:
        return response.status, (await response.json() if response.status != 204 else {})


async def rooms_seen(http, node) -> list[tuple]:
    status, body = await api(http, node, "GET", "/api/rooms")
    assert status == 200, body
    return sorted((r["name"], r["num_participants"], r["node"]) for r in body["rooms"])




async def joined(url: str, room: str, identity: str, keyed: bool = True) -> Client:
    client = Client(url, ice_addresses=LOOPBACK, timeout=20)
    await client.connect()
    try:
        await client.join(room, identity, token=join_token(identity, room) if keyed else None)
    except BaseException:
        await client.close()
        raise
    return client


async def video_flows(publisher: Client, subscriber: Client, frames: int = 5) -> None:
    """``publisher`` sends video; ``subscriber`` decodes at least ``frames``."""
    await publisher.publish([PatternVideoTrack(320, 240)])
    remote = next(t for t in await subscriber.wait_tracks(1, timeout=20) if t.participant_id == publisher.participant_id)
    got = 0
    deadline = time.monotonic() + 10
    while got < frames and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(remote.track.recv(), deadline - time.monotonic())
            got += 1
        except asyncio.TimeoutError:
            break
    assert got >= frames, f"only {got} frames through the owner node in 10 s"


# --- in-process nodes ------------------------------------------------------------


async def test_clients_of_different_nodes_meet_on_the_owner(cluster_nodes, http):
    n1, n2 = await cluster_nodes("n1", keys=KEYS), await cluster_nodes("n2", keys=KEYS)
    alice = await joined(n1.url, "standup", "alice")
    owner, other = (n1, n2) if alice.url == n1.url else (n2, n1)
    bob = await joined(other.url, "standup", "bob")
    try:
        assert bob.url == owner.url, "bob was not sent to the room's node"
        assert [p["identity"] for p in bob.roster.values()] == ["alice"]
        await eventually(lambda: bob.participant_id in alice.roster)
        await video_flows(alice, bob)

        expected = [("standup", 2, owner.id)]
        for node in (n1, n2):
            await eventually_async(lambda: _equals(rooms_seen(http, node), expected))
            status, body = await api(http, node, "GET", "/api/nodes")
            assert status == 200 and {n["id"] for n in body["nodes"]} == {"n1", "n2"}
        # the owner reports its load: participants and the packets it moves
        await eventually_async(lambda: _owner_busy(http, other, owner.id))
        # a room operation through the other node is answered by the owner
        status, body = await api(http, other, "GET", "/api/rooms/standup/participants")
        assert status == 200 and sorted(p["identity"] for p in body["participants"]) == ["alice", "bob"]
        status, _ = await api(http, other, "DELETE", "/api/rooms/standup/participants/bob")
        assert status == 204
        leave = await eventually(lambda: [e for e in bob.events if e["type"] == "leave"])
        assert leave[0]["reason"] == "removed"
    finally:
        await alice.close()
        await bob.close()


async def test_admin_creates_rooms_on_the_least_loaded_node(cluster_nodes, http):
    n1, n2 = await cluster_nodes("n1", keys=KEYS), await cluster_nodes("n2", keys=KEYS)
    busy = await joined(n1.url, "busy", "carol")  # one participant on its owner
    try:
        owner_of_busy = n1 if busy.url == n1.url else n2
        idle = n2 if owner_of_busy is n1 else n1
        await eventually_async(lambda: _equals(rooms_seen(http, idle), [("busy", 1, owner_of_busy.id)]))
        status, body = await api(http, owner_of_busy, "POST", "/api/rooms", {"name": "webinar"})
        assert status == 201 and body["name"] == "webinar"
        expected = [("busy", 1, owner_of_busy.id), ("webinar", 0, idle.id)]
        await eventually_async(lambda: _equals(rooms_seen(http, owner_of_busy), expected))
        status, body = await api(http, idle, "POST", "/api/rooms", {"name": "webinar"})
        assert status == 409 and body["error"]["code"] == "room_exists"
        status, _ = await api(http, owner_of_busy, "DELETE", "/api/rooms/webinar")
        assert status == 204
        await eventually_async(lambda: _equals(rooms_seen(http, owner_of_busy), [("busy", 1, owner_of_busy.id)]))
    finally:
        await busy.close()


async def test_a_redirect_carries_a_short_lived_ticket_for_that_room(cluster_nodes, http):
    n1, n2 = await cluster_nodes("n1", keys=KEYS), await cluster_nodes("n2", keys=KEYS)
    alice = await joined(n1.url, "standup", "alice")
    other = n2 if alice.url == n1.url else n1
    try:
        async with http.ws_connect(other.url) as ws:
            await ws.send_json({"type": "join", "id": 1, "room": "standup", "name": "Bob",
                                "token": join_token("bob", "standup")})
            redirect = await ws.receive_json(timeout=10)
        assert redirect["type"] == "redirect" and redirect["url"] == alice.url
        claims = jwt.decode(redirect["ticket"], API_SECRET, algorithms=["HS256"])
        assert claims["sub"] == "bob" and claims["video"]["room"] == "standup"
        assert claims["exp"] - time.time() <= 30
        forged = redirect["ticket"][:-4] + ("AAAA" if not redirect["ticket"].endswith("AAAA") else "BBBB")
        async with http.ws_connect(redirect["url"]) as ws:
            await ws.send_json({"type": "join", "id": 1, "room": "standup", "token": forged})
            assert (await ws.receive_json(timeout=10))["code"] == "token_bad_signature"
        async with http.ws_connect(redirect["url"]) as ws:
            await ws.send_json({"type": "join", "id": 1, "room": "standup", "token": redirect["ticket"]})
            answer = await ws.receive_json(timeout=10)
            assert answer["type"] == "join_response" and answer["participant"]["identity"] == "bob"
    finally:
        await alice.close()


async def test_open_nodes_redirect_without_a_ticket(cluster_nodes, http):
    n1, n2 = await cluster_nodes("n1"), await cluster_nodes("n2")
    alice = await joined(n1.url, "open", "alice", keyed=False)
    other = n2 if alice.url == n1.url else n1
    try:
        async with http.ws_connect(other.url) as ws:
            await ws.send_json({"type": "join", "id": 1, "room": "open", "name": "Bob"})
            redirect = await ws.receive_json(timeout=10)
        assert redirect["type"] == "redirect" and "ticket" not in redirect
        bob = await joined(other.url, "open", "bob", keyed=False)
        assert bob.url == alice.url and len(bob.roster) == 1
        await bob.close()
    finally:
        await alice.close()


async def test_without_redis_joins_and_admin_say_so(cluster_nodes, redis_server, http):
    n1 = await cluster_nodes("n1", keys=KEYS)
    redis_server.stop()
    async with http.ws_connect(n1.url) as ws:
        await ws.send_json({"type": "join", "id": 1, "room": "r", "token": join_token("alice", "r")})
        answer = await ws.receive_json(timeout=10)
    assert answer["type"] == "error" and answer["code"] == "cluster_unavailable"
    status, body = await api(http, n1, "GET", "/api/rooms")
    assert status == 503 and body["error"]["code"] == "cluster_unavailable"


async def _owner_busy(http, node, owner_id: str) -> bool:
    status, body = await api(http, node, "GET", "/api/nodes")
    load = {n["id"]: n for n in body["nodes"]}[owner_id]
    return load["participants"] == 2 and load["packets_per_second"] > 10 and load["cpu"] > 0


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected


async def _more_than(awaitable, count: int) -> bool:
    return await awaitable > count


# --- two `pysfu serve` processes, SIGKILL ------------------------------------------


def start_node(redis_url: str, node_id: str, workers: int = 1):
    """A `pysfu serve` process in the cluster, with the default heartbeat and ttl."""
    keys = ",".join(f"{k}:{s}" for k, s in KEYS.items())
    return start_server_process(["--keys", keys, "--redis-url", redis_url, "--node-id", node_id,
                                 "--joins-per-minute", "0", "--workers", str(workers)])


async def test_two_processes_share_rooms_and_survive_a_killed_node(redis_server, http):
    """n1 runs two workers behind its front process, n2 is a single process.
    Alice opens the room while n1 is alone, so n1 owns it; Bob joins through
    n2 and is redirected; Carol's new room goes to the idle n2 although she
    connects to n1. Then n1 is SIGKILLed."""
    loop = asyncio.get_running_loop()
    nodes = {}
    clients: list[Client] = []
    try:
        nodes["n1"] = n1 = await loop.run_in_executor(None, start_node, redis_server.url, "n1", 2)
        alice = await joined(n1.url, "standup", "alice")
        clients.append(alice)
        nodes["n2"] = n2 = await loop.run_in_executor(None, start_node, redis_server.url, "n2")
        bob = await joined(n2.url, "standup", "bob")
        clients.append(bob)
        assert alice.url == bob.url == n1.url, "bob was not sent to the room's node"
        await video_flows(alice, bob)
        await video_flows(bob, alice)
        carol = await joined(n1.url, "other", "carol")
        clients.append(carol)
        assert carol.url == n2.url, "a new room did not go to the least-loaded node"
        expected = [("other", 1, "n2"), ("standup", 2, "n1")]
        for node in (n1, n2):
            await eventually_async(lambda: _equals(rooms_seen(http, node), expected))

        n1.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await eventually_async(lambda: _node_gone(http, n2, "n1"), timeout=12)
        assert time.monotonic() - killed < 10, "a dead node stayed in the registry for 10 s"
        assert await rooms_seen(http, n2) == [("other", 1, "n2")]
        for client in (alice, bob):
            await client.close()

        # its clients come back through the other node: the room starts there
        alice = await joined(n2.url, "standup", "alice")
        clients.append(alice)
        bob = await joined(n2.url, "standup", "bob")
        clients.append(bob)
        await video_flows(alice, bob)
        assert await rooms_seen(http, n2) == [("other", 1, "n2"), ("standup", 2, "n2")]
    finally:
        for client in clients:
            await client.close()
        for node in nodes.values():
            if node.proc.poll() is None:
                stop_server_process(node)


async def _node_gone(http, node, node_id: str) -> bool:
    status, body = await api(http, node, "GET", "/api/nodes")
    return status == 200 and node_id not in {n["id"] for n in body["nodes"]}


# --- the JS client follows a redirect too ---------------------------------------------

JOIN_JS = """
async ([room, token]) => {
  const {PysfuClient} = await import("/pysfu.js");
  const client = new PysfuClient();
  window.client = client;
  await client.join(room, "viewer", {token});
  return client.url;
}
"""
FRAMES_JS = """
async () => {
  let frames = 0;
  (await window.client.subscriberPc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
  });
  return frames;
}
"""


@pytest.mark.browser
async def test_the_js_client_follows_a_redirect(cluster_nodes, tmp_path):
    from .browser import chromium

    n1, n2 = await cluster_nodes("n1", keys=KEYS), await cluster_nodes("n2", keys=KEYS)
    alice = await joined(n1.url, "standup", "alice")
    other = n2 if alice.url == n1.url else n1
    try:
        await alice.publish([PatternVideoTrack(320, 240)])
        async with chromium(tmp_path) as browser:
            page = await browser.new_page()
            await page.goto(f"{other.http}/")
            url = await page.evaluate(JOIN_JS, ["standup", join_token("viewer", "standup")])
            assert url == alice.url, "the page did not move to the room's node"
            await eventually_async(lambda: _more_than(page.evaluate(FRAMES_JS), 10), timeout=15)
            assert await page.evaluate("window.client.participants().map((p) => p.name)") == ["alice"]
    finally:
        await alice.close()
