"""The node registry and room ownership (signaling/scaling/cluster.py) on a real
redis-server: registration and expiry, least-loaded placement, atomic
claims, hand-over from a dead node; and the cluster settings."""

from __future__ import annotations

import asyncio
import time

import pytest

from signaling.cli import build_parser, serve, serve_flags
from signaling.scaling.cluster import Cluster, ClusterError, LocalLoad
from signaling.config import Cluster as ClusterSettings
from signaling.config import ConfigError, load_config

from .conftest import free_port
from .waiting import eventually_async
from .redis_server import redis_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # Redis heartbeats and expiries

HEARTBEAT = 0.5
TTL = 2.0


class Node:
    """A cluster member whose rooms the test sets by hand."""

    def __init__(self, redis_url: str, node_id: str) -> None:
        self.rooms: dict[str, int] = {}  # name -> participants
        settings = ClusterSettings(redis_url=redis_url, node_id=node_id, heartbeat=HEARTBEAT, ttl=TTL)
        self.cluster = Cluster(settings, f"ws://127.0.0.1:{free_port()}/ws", self.load)

    def load(self) -> LocalLoad:
        return LocalLoad([{"name": name, "num_participants": count, "max_participants": 150,
                           "metadata": "", "created_at": 0} for name, count in self.rooms.items()])

    async def die(self) -> None:
        """Stop beating without saying goodbye, like a killed process."""
        self.cluster._stopping = True
        self.cluster._task.cancel()
        await asyncio.gather(self.cluster._task, return_exceptions=True)
        await self.cluster._redis.aclose()


@pytest.fixture
async def nodes(redis_server):
    started: list[Node] = []

    async def make(node_id: str) -> Node:
        node = Node(redis_server.url, node_id)
        await node.cluster.start()
        started.append(node)
        return node

    yield make
    for node in started:
        if not node.cluster._task.done():
            await node.cluster.stop()


async def ids(cluster: Cluster) -> set[str]:
    return {n.id for n in await cluster.nodes()}


async def test_nodes_register_with_their_load_and_a_dead_one_expires(nodes):
    a, b = await nodes("a"), await nodes("b")
    a.rooms["standup"] = 3
    a.cluster.observe("participant_joined", {})  # a change beats soon
    listed = await eventually_async(lambda: _node(b.cluster, "a", participants=3), timeout=5, interval=0.05)
    assert listed.rooms[0]["name"] == "standup" and listed.url == a.cluster.url
    assert await ids(b.cluster) == {"a", "b"}
    await a.die()
    died = time.monotonic()
    while "a" in await ids(b.cluster):
        assert time.monotonic() - died < TTL + 3, "a dead node is still listed"
        await asyncio.sleep(0.05)


async def test_a_new_room_goes_to_the_least_loaded_node(nodes):
    a, b = await nodes("a"), await nodes("b")
    a.rooms["busy"] = 5
    await a.cluster.beat()
    assert (await a.cluster.place("new")).id == "b"
    assert (await b.cluster.place("new")).id == "b", "placed rooms keep their owner"
    assert (await a.cluster.owner("new")).id == "b"
    assert await a.cluster.owner("nobody-here") is None


async def test_concurrent_placements_agree_on_one_owner(nodes):
    a, b = await nodes("a"), await nodes("b")
    rooms = [f"room{i}" for i in range(20)]
    placed = await asyncio.gather(*(c.place(r) for r in rooms for c in (a.cluster, b.cluster)))
    owners = [placed[i].id for i in range(0, len(placed), 2)]
    assert owners == [placed[i].id for i in range(1, len(placed), 2)]


async def test_the_owner_keeps_its_room_and_frees_it_when_it_empties(nodes):
    a, b = await nodes("a"), await nodes("b")
    b.rooms["extra"] = 9  # so a is the least loaded
    await b.cluster.beat()
    assert (await a.cluster.place("r")).id == "a"
    a.rooms["r"] = 1
    await asyncio.sleep(TTL * 2)  # the heartbeat keeps the claim past its ttl
    assert (await b.cluster.owner("r")).id == "a"
    del a.rooms["r"]
    await a.cluster.beat()
    assert await b.cluster.owner("r") is None


async def test_rooms_of_a_dead_node_start_again_elsewhere(nodes):
    a, b = await nodes("a"), await nodes("b")
    b.rooms["extra"] = 9
    await b.cluster.beat()
    assert (await a.cluster.place("r")).id == "a"
    a.rooms["r"] = 2
    await a.die()
    await eventually_async(lambda: _gone(b.cluster, "a"), timeout=TTL + 5, interval=0.05)
    assert (await b.cluster.place("r")).id == "b"


async def test_a_stopped_node_leaves_at_once_and_frees_its_rooms(nodes):
    a, b = await nodes("a"), await nodes("b")
    b.rooms["extra"] = 9
    await b.cluster.beat()
    assert (await a.cluster.place("r")).id == "a"
    a.rooms["r"] = 2
    await a.cluster.beat()
    await a.cluster.stop()
    assert await ids(b.cluster) == {"b"}
    assert await b.cluster.owner("r") is None


async def test_unreachable_redis_is_a_clear_error():
    settings = ClusterSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    cluster = Cluster(settings, "ws://127.0.0.1:1/ws", LocalLoad)
    with pytest.raises(ClusterError, match="cannot reach Redis"):
        await cluster.start()


# --- settings -------------------------------------------------------------------


def test_settings_come_from_flags_env_and_yaml(tmp_path):
    path = tmp_path / "pysfu.yaml"
    path.write_text("cluster:\n  redis_url: redis://yaml:6379/0\n  heartbeat: 1\n  ttl: 4\n")
    env = {"PYSFU_CLUSTER__REDIS_URL": "redis://env:6379/0", "PYSFU_CLUSTER__NODE_ID": "env-node"}
    args = build_parser().parse_args(["serve", "--node-id", "n1", "--node-url", "ws://10.0.0.1:7880/ws",
                                      "--node-ttl", "5"])
    config = load_config(serve_flags(args), env=env, path=path)
    cluster = config.cluster
    assert (cluster.redis_url, cluster.node_id, cluster.url) == ("redis://env:6379/0", "n1", "ws://10.0.0.1:7880/ws")
    assert (cluster.heartbeat, cluster.ttl) == (1, 5)
    assert config.node_url == "ws://10.0.0.1:7880/ws"


def test_without_redis_nothing_is_clustered():
    config = load_config({}, env={})
    assert not config.cluster.enabled
    assert config.node_url == "ws://127.0.0.1:7880/ws"


@pytest.mark.parametrize("settings, message", [
    ({"cluster": {"redis_url": "http://x"}}, "must start with redis://"),
    ({"cluster": {"redis_url": "redis://x", "heartbeat": 3, "ttl": 5}}, "at least twice the heartbeat"),
    ({"cluster": {"redis_url": "redis://x", "ttl": 30}}, "less than or equal to 10"),
    ({"cluster": {"url": "http://x"}}, "must start with ws://"),
    ({"host": "0.0.0.0", "cluster": {"redis_url": "redis://x"}}, "give cluster.url"),
    ({"dev": True, "cluster": {"redis_url": "redis://x"}}, "for one node"),
], ids=["redis-scheme", "ttl-vs-heartbeat", "ttl-max", "url-scheme", "wildcard-host", "dev-without-keys"])
def test_bad_cluster_settings_are_named(settings, message):
    with pytest.raises(ConfigError, match=message):
        load_config(settings, env={})


# --- helpers --------------------------------------------------------------------


async def _node(cluster: Cluster, node_id: str, participants: int):
    for node in await cluster.nodes():
        if node.id == node_id and node.participants == participants:
            return node
    return None


async def _gone(cluster: Cluster, node_id: str) -> bool:
    return node_id not in await ids(cluster)





@pytest.mark.parametrize("workers", [1, 2], ids=["single-process", "front-and-workers"])
async def test_serve_without_redis_exits_with_a_clear_error(workers):
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    config = load_config({"port": free_port(), "workers": workers, "cluster": {"redis_url": redis_url},
                          "sfu": {"ice": {"udp_port": 0}}}, env={})  # 0: no media port to collide on
    with pytest.raises(SystemExit, match="cannot reach Redis at redis://127.0.0.1:"):
        await serve(config)
