"""Many nodes through Redis: a registry of live nodes and the owner of each room.

Every node writes its record (URL and load) under a key that expires after
``ttl`` seconds, and refreshes it every ``heartbeat``; a node that dies is
forgotten when its key expires.  A room is owned by the node named under its
room key, claimed atomically (``SET NX``) and kept alive by the owner's
heartbeat with the same ``ttl``, so a dead node's rooms are free again as
soon as the node itself is gone.  Keys, with the default prefix ``pysfu``:

    pysfu:node:<id>    JSON NodeInfo, expires after ttl
    pysfu:nodes        set of the ids that registered (expired ones pruned)
    pysfu:room:<name>  id of the node that owns the room, expires after ttl

Nothing here knows about WebSockets or HTTP: ``place`` answers which node a
room lives on, and the signaling layer redirects or forwards accordingly.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import RedisError

from ..config import Cluster as ClusterSettings

log = logging.getLogger(__name__)

#: After a room changes, wait this long to gather a burst into one heartbeat.
NUDGE_DELAY = 0.05
#: Attempts of ``place`` when the owner it reads keeps changing underneath.
PLACE_ATTEMPTS = 4

# Keep the claim of a room we own; take it if nobody holds it.  1: ours, 0: another's.
_REFRESH = """
local owner = redis.call('GET', KEYS[1])
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# Replace the owner only if it is still ARGV[1] (a dead node).
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# Give a room up, unless another node holds it by now.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ClusterError(Exception):
    """Redis cannot be reached or answered with an error."""


class NodeInfo(BaseModel):
    """What a node tells the others about itself, every heartbeat."""

    id: str
    #: Signaling WebSocket URL (redirect target).
    url: str
    #: HTTP base URL (admin requests are forwarded here).
    api: str
    participants: int = 0
    #: Summaries of the rooms it holds (name, num_participants, ...).
    rooms: list[dict] = []
    #: Share of one core used over the last heartbeat interval.
    cpu: float = 0.0
    #: RTP packets received plus sent per second over the last interval.
    packets_per_second: float = 0.0
    draining: bool = False
    updated_at: float = 0.0

    def load_key(self) -> tuple:
        """Sort key of placement: fewest participants, then least CPU."""
        return (self.participants, round(self.cpu, 2), self.packets_per_second, self.id)


@dataclass
class LocalLoad:
    """This node's rooms and traffic, read at each heartbeat."""

    rooms: list[dict] = field(default_factory=list)
    #: Packets received plus sent since start (a counter that only grows).
    packets: int = 0
    #: The packet rate, when the provider knows it already (then ``packets`` is unused).
    packet_rate: Optional[float] = None


def registry_load(registry) -> LocalLoad:
    """The load of a ``sfu.room.RoomRegistry``."""
    counters = registry.counters()
    packets = sum(v for (name, _kind), v in counters.items() if name in ("packets_in", "packets_out"))
    return LocalLoad([room.summary() for room in registry.rooms.values()], packets)


def default_node_id() -> str:
    return f"{socket.gethostname()}-{secrets.token_hex(3)}"


def api_url(ws_url: str) -> str:
    """ws://host:port/ws -> http://host:port"""
    scheme, rest = ws_url.split("://", 1)
    base = rest.split("/", 1)[0]
    return ("https" if scheme == "wss" else "http") + "://" + base


class Cluster:
    """This node's membership: heartbeat, room claims, and the view of the others."""

    def __init__(
        self,
        settings: ClusterSettings,
        url: str,
        load: Callable[[], LocalLoad],
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.id = settings.node_id or default_node_id()
        self.url = url
        self.api = api_url(url)
        self._load = load
        self._draining = draining
        self._ttl_ms = int(settings.ttl * 1000)
        self._redis = aioredis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._refresh = self._redis.register_script(_REFRESH)
        self._take_over = self._redis.register_script(_TAKE_OVER)
        self._release = self._redis.register_script(_RELEASE)
        self._held: set[str] = set()
        self._nudged = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self._stopping = False
        self._last = (time.monotonic(), time.process_time(), 0)
        self._rates = (0.0, 0.0)

    # --- keys -----------------------------------------------------------------

    def _node_key(self, node_id: str) -> str:
        return f"{self.settings.prefix}:node:{node_id}"

    def _room_key(self, room: str) -> str:
        return f"{self.settings.prefix}:room:{room}"

    @property
    def _nodes_key(self) -> str:
        return f"{self.settings.prefix}:nodes"

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Register (raises ClusterError when Redis cannot be reached) and beat."""
        try:
            await self._redis.ping()
            await self.beat()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise ClusterError(f"cannot reach Redis at {self.settings.redis_url}: {exc}") from None
        self._stopping = False
        self._task = asyncio.ensure_future(self._beat_loop())
        log.info("node %s joined the cluster at %s", self.id, self.url)

    async def stop(self) -> None:
        """Leave: the record and the claims go now rather than at expiry."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._node_key(self.id))
                pipe.srem(self._nodes_key, self.id)
                for room in self._held:
                    await self._release(keys=[self._room_key(room)], args=[self.id], client=pipe)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not deregister node %s: %s", self.id, exc)
        self._held.clear()
        await self._redis.aclose()

    def observe(self, event: str, payload: dict) -> None:
        """Room observer: a change in the rooms makes the next beat come soon."""
        if event in ("room_started", "room_finished", "participant_joined", "participant_left"):
            self.nudge()

    def nudge(self) -> None:
        """The rooms changed: beat within NUDGE_DELAY rather than at the next interval."""
        self._nudged.set()

    async def _beat_loop(self) -> None:
        # checked as well as cancelled: asyncio.wait_for on 3.11 can swallow a
        # cancellation that races its timeout, and stop() must not wait forever
        while not self._stopping:
            try:
                await asyncio.wait_for(self._nudged.wait(), self.settings.heartbeat)
                await asyncio.sleep(NUDGE_DELAY)
            except asyncio.TimeoutError:
                pass
            self._nudged.clear()
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                log.warning("cluster heartbeat failed: %s", exc)
            except Exception:
                log.exception("cluster heartbeat failed")

    async def beat(self) -> None:
        """Publish this node's record and keep the claims of its rooms."""
        info = self.info()
        rooms = {room["name"] for room in info.rooms}
        gone, self._held = self._held - rooms, rooms
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._node_key(self.id), info.model_dump_json(), px=self._ttl_ms)
            pipe.sadd(self._nodes_key, self.id)
            for room in sorted(rooms):
                await self._refresh(keys=[self._room_key(room)], args=[self.id, self._ttl_ms], client=pipe)
            for room in gone:
                await self._release(keys=[self._room_key(room)], args=[self.id], client=pipe)
            results = await pipe.execute()
        for room, kept in zip(sorted(rooms), results[2:]):
            if not kept:
                log.warning("room %r is held here but owned by another node", room)

    def info(self) -> NodeInfo:
        load = self._load()
        now, cpu, packets = time.monotonic(), time.process_time(), load.packets
        then, cpu_then, packets_then = self._last
        if now - then >= 0.5:  # rates over at least half a second
            self._rates = ((cpu - cpu_then) / (now - then), (packets - packets_then) / (now - then))
            self._last = (now, cpu, packets)
        return NodeInfo(
            id=self.id, url=self.url, api=self.api,
            participants=sum(room["num_participants"] for room in load.rooms),
            rooms=load.rooms, cpu=round(self._rates[0], 3),
            packets_per_second=round(self._rates[1] if load.packet_rate is None else load.packet_rate, 1),
            draining=self._draining(), updated_at=time.time(),
        )

    # --- the view of the cluster ----------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        """Every live node, this one included."""
        try:
            ids = sorted(m.decode() for m in await self._redis.smembers(self._nodes_key))
            records = await self._redis.mget([self._node_key(i) for i in ids]) if ids else []
            dead = [i for i, record in zip(ids, records) if record is None]
            if dead:
                await self._redis.srem(self._nodes_key, *dead)
        except (RedisError, OSError) as exc:
            raise ClusterError(f"Redis: {exc}") from None
        return [NodeInfo.model_validate_json(r) for r in records if r is not None]

    async def node(self, node_id: str) -> Optional[NodeInfo]:
        try:
            record = await self._redis.get(self._node_key(node_id))
        except (RedisError, OSError) as exc:
            raise ClusterError(f"Redis: {exc}") from None
        return NodeInfo.model_validate_json(record) if record is not None else None

    async def owner(self, room: str) -> Optional[NodeInfo]:
        """The live node that owns ``room``, if any."""
        try:
            owner = await self._redis.get(self._room_key(room))
        except (RedisError, OSError) as exc:
            raise ClusterError(f"Redis: {exc}") from None
        return await self.node(owner.decode()) if owner is not None else None

    async def place(self, room: str) -> NodeInfo:
        """The node that owns ``room``; a room nobody owns is claimed for the
        least-loaded live node (which may be this one)."""
        try:
            for _ in range(PLACE_ATTEMPTS):
                node = await self._place_once(room)
                if node is not None:
                    return node
        except (RedisError, OSError) as exc:
            raise ClusterError(f"Redis: {exc}") from None
        raise ClusterError(f"the owner of room {room!r} kept changing")

    async def _place_once(self, room: str) -> Optional[NodeInfo]:
        key = self._room_key(room)
        candidate = await self._least_loaded()
        if await self._redis.set(key, candidate.id, nx=True, px=self._ttl_ms):
            return candidate
        owner = await self._redis.get(key)
        if owner is None:
            return None  # released meanwhile: try again
        node = await self.node(owner.decode())
        if node is not None:
            return node
        # the owner is dead but its claim has not expired yet: take it over
        if await self._take_over(keys=[key], args=[owner, candidate.id, self._ttl_ms]):
            log.info("room %r: owner %s is gone, moved to %s", room, owner.decode(), candidate.id)
            return candidate
        return None

    async def _least_loaded(self) -> NodeInfo:
        me = self.info()  # our own load, fresher than our record
        nodes = [n for n in await self.nodes() if not n.draining and n.id != self.id]
        if not me.draining or not nodes:
            nodes.append(me)
        return min(nodes, key=NodeInfo.load_key)

    def is_self(self, node: NodeInfo) -> bool:
        return node.id == self.id
