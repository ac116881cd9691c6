"""The front process of `pysfu serve --workers N` (issue 7): the node's one
public HTTP/WebSocket port in front of N worker processes.

* /ws: the front reads the client's ``join``, picks the worker for its room
  (signaling/scaling/supervisor.py ``place``), and relays WebSocket frames both ways
  to that worker's loopback port. If the worker dies, the client gets
  ``leave`` with reason ``worker_restarted`` (join again) and the socket
  closes; the supervisor starts the worker again.
* /metrics: every worker's metrics, each sample labelled ``worker``, plus
  the front's own (workers alive, restarts, relayed sessions).
* /api: the admin API of the whole node: room lists merged, a room's
  requests sent to the workers that host it.
* /healthz, /readyz answered here; everything else (demo page, /dev/token)
  is served by a worker.
* With a Redis URL the front is the node of the cluster (signaling/scaling/cluster.py):
  a join for a room another node owns is answered with ``redirect``, and
  admin requests about such a room are forwarded there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from typing import Callable, Optional

import aiohttp
from aiohttp import WSMsgType, web

from sfu import events

from .. import protocol as p
from ..app import (FORWARDED_FOR, FRONT_SECRET_HEADER, HARD_SIZE_FACTOR, _with_dev_key, aborter,
                  connection_limiter, handler_args, refuse_connection)
from ..auth import AuthError
from ..config import ServerConfig
from ..http_errors import error_response
from ..limits import ConnectionLimiter
from ..session import CLOSE_TIMEOUT, finished_within
from .cluster import Cluster, ClusterError, LocalLoad, NodeInfo, api_url
from .forward import Forwarder, forwarded
from .supervisor import Supervisor, Worker, place
from .tickets import ticket_for_join

log = logging.getLogger(__name__)

SUPERVISOR = web.AppKey("supervisor", Supervisor)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
STATE = web.AppKey("state", dict)
CLUSTER = web.AppKey("cluster", Optional[Cluster])
FORWARDER = web.AppKey("forwarder", Optional[Forwarder])
CONNECTIONS = web.AppKey("connections", ConnectionLimiter)
WORKER_RESTARTED = "worker_restarted"
#: Seconds one message to a client may take; a client that takes nothing for
#: that long is cut (its worker session then waits for a resume).
SEND_TIMEOUT = 10.0
ROOM_PATH = re.compile(r"^/api/rooms/([^/]+)")
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "keep-alive"}


def create_front_app(config: ServerConfig, count: int) -> web.Application:
    config = _with_dev_key(config)  # one dev key for every worker
    app = web.Application(handler_args=handler_args(config))
    app[CONNECTIONS] = connection_limiter(config)
    app[SUPERVISOR] = Supervisor(config, count)
    app[STATE] = {"config": config, "draining": False, "sessions": set(), "relayed": 0}
    cluster = None
    if config.cluster.enabled:
        cluster = Cluster(config.cluster, config.node_url, lambda: _node_load(app), lambda: app[STATE]["draining"])
    app[CLUSTER] = cluster
    app[FORWARDER] = Forwarder(cluster.id) if cluster else None
    app.router.add_get("/ws", websocket)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/api/rooms", admin_rooms)
    app.router.add_route("*", "/api/rooms/{tail:.*}", admin_room)
    app.router.add_get("/api/nodes", admin_nodes)
    app.router.add_route("*", "/{tail:.*}", proxy_any)
    app.cleanup_ctx.append(_workers)
    return app


async def _workers(app: web.Application):
    supervisor = app[SUPERVISOR]
    supervisor.check_udp_ports()
    supervisor.on_worker_lost = lambda worker: _worker_lost(app, worker)
    if app[CLUSTER]:
        await app[CLUSTER].start()
    app[CLIENT] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
    await supervisor.start()
    yield
    await app[CLIENT].close()
    if app[CLUSTER]:
        await app[FORWARDER].close()
        await app[CLUSTER].stop()


def _node_load(app: web.Application) -> LocalLoad:
    """The node's rooms as the front sees them: relayed sessions per room."""
    counts: Counter = Counter()
    for worker in app[SUPERVISOR].workers:
        counts.update(worker.sessions)
    capacity = app[STATE]["config"].limits.room_capacity
    rooms = [{"name": name, "num_participants": count, "max_participants": capacity, "metadata": "",
              "created_at": 0} for name, count in counts.items() if count > 0]
    return LocalLoad(rooms, packet_rate=sum(w.packets_out_rate for w in app[SUPERVISOR].workers))


async def stop_workers(app: web.Application, grace: float) -> None:
    """SIGTERM: no new joins; workers tell their clients to leave and exit."""
    app[STATE]["draining"] = True
    await app[SUPERVISOR].stop(grace)


def _worker_lost(app: web.Application, worker: Worker) -> None:
    for relay in list(app[STATE]["sessions"]):
        if relay.worker is worker:
            relay.worker_lost()


# --- WebSocket relay ------------------------------------------------------------


class Relay:
    """One client's WebSocket relayed to the worker of its room."""

    def __init__(self, app: web.Application, client: web.WebSocketResponse, address: str,
                 abort: Callable[[], None] = lambda: None) -> None:
        """``abort`` cuts the client's connection at once."""
        self.app = app
        self.client = client
        self.address = address
        self.abort = abort
        self.worker: Optional[Worker] = None
        self.generation = 0
        self.room = ""
        self.upstream: Optional[aiohttp.ClientWebSocketResponse] = None
        self.lost = False

    async def run(self) -> None:
        try:
            first = await asyncio.wait_for(self._wait_for_join(), self.app[STATE]["config"].limits.join_timeout)
        except asyncio.TimeoutError:
            await self._close_client(p.CloseCode.JOIN_TIMEOUT, p.CloseCode.REASONS[p.CloseCode.JOIN_TIMEOUT])
            return
        if first is None:
            return
        supervisor = self.app[SUPERVISOR]
        worker = place(self.room, supervisor.workers, self.app[STATE]["config"].worker_room_limit)
        if worker is None:
            await self._send_error(None, "server_draining", "no worker is ready: try again")
            return
        self.worker, self.generation = worker, worker.generation
        supervisor.joining(worker, self.room)
        self._rooms_changed()
        self.app[STATE]["sessions"].add(self)
        self.app[STATE]["relayed"] += 1
        try:
            self.upstream = await self.app[CLIENT].ws_connect(
                f"http://127.0.0.1:{worker.port}/ws", headers=_from_front(supervisor, self.address),
                max_msg_size=0, autoping=True,
            )
            await self.upstream.send_str(first)
            await asyncio.gather(self._client_to_worker(), self._worker_to_client())
        except aiohttp.ClientError:
            self.lost = True
        finally:
            self.app[STATE]["sessions"].discard(self)
            supervisor.left(worker, self.room, self.generation)
            self._rooms_changed()
            if self.lost and not self.client.closed:
                await self._tell_rejoin()
            if self.upstream is not None:
                await self.upstream.close()
            await self._close_client()

    async def _wait_for_join(self) -> Optional[str]:
        """Answer what comes before ``join`` (it names the room)."""
        async for message in self.client:
            if message.type != WSMsgType.TEXT:
                await self._send_error(None, "bad_message", "binary messages are not supported")
                continue
            try:
                data = json.loads(message.data)
            except ValueError as exc:
                await self._send_error(None, "bad_json", f"invalid JSON: {exc}")
                continue
            request_id = p.request_id_of(data)
            if isinstance(data, dict) and data.get("type") == "join" and isinstance(data.get("room"), str):
                if self.app[STATE]["draining"]:
                    await self._send_error(request_id, "server_draining", "the server is shutting down")
                    continue
                self.room = data["room"]
                if self.app[CLUSTER] is not None and await self._redirected(data):
                    return None
                return message.data
            if isinstance(data, dict) and data.get("type") == "ping" and request_id is not None:
                await self.client.send_str(p.Pong(id=request_id).model_dump_json())
                continue
            await self._send_error(request_id, "not_joined", "join a room first")
        return None

    def _rooms_changed(self) -> None:
        if self.app[CLUSTER] is not None:
            self.app[CLUSTER].nudge()

    async def _redirected(self, join: dict) -> bool:
        """Answer ``redirect`` (or the error that stops the join) when another
        node owns the room; False when it is this node's."""
        cluster, request_id = self.app[CLUSTER], p.request_id_of(join)
        if request_id is None:
            return False  # the worker answers bad_message
        try:
            owner = await cluster.place(self.room)
            if cluster.is_self(owner):
                return False
            ticket = ticket_for_join(self.app[STATE]["config"], join.get("token"), self.room)
        except ClusterError as exc:
            await self._send_error(request_id, p.ErrorCode.CLUSTER_UNAVAILABLE, f"cannot place the room: {exc}")
            return True
        except AuthError as exc:
            await self._send_error(request_id, exc.code, exc.message)
            return True
        redirect = p.Redirect(id=request_id, url=owner.url, node=owner.id, ticket=ticket)
        await self.client.send_str(redirect.model_dump_json(exclude_none=True))
        return True

    async def _client_to_worker(self) -> None:
        async for message in self.client:
            if message.type == WSMsgType.TEXT:
                await self.upstream.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await self.upstream.send_bytes(message.data)
        # the worker tells a client that left (its close code) from one that dropped
        left = self.client.close_code in p.CLIENT_LEFT
        await self.upstream.close(code=self.client.close_code if left else p.DROPPED)

    async def _worker_to_client(self) -> None:
        async for message in self.upstream:
            if message.type == WSMsgType.TEXT and not await self._relay(message.data):
                break
        # closed without a close frame (1006): the worker died
        if self.upstream.close_code in (None, 1006) or not self.worker.alive:
            self.lost = True
        if self.lost and not self.client.closed:
            await self._tell_rejoin()
        code = self.upstream.close_code
        if code is not None and code >= 4000:  # the session's own close code (slow_consumer, ...)
            await self._close_client(code, p.CloseCode.REASONS.get(code, ""))
        else:
            await self._close_client()

    async def _relay(self, text: str) -> bool:
        """Send one message to the client; False when the client is gone or
        took nothing for SEND_TIMEOUT seconds (it is then cut)."""
        sending = asyncio.ensure_future(self.client.send_str(text))
        if not await finished_within(sending, SEND_TIMEOUT):
            log.info("client took nothing for %.0f s: cut", SEND_TIMEOUT)
            self.abort()
            await finished_within(sending, CLOSE_TIMEOUT)  # the lost connection wakes it
            return False
        return not sending.cancelled() and sending.exception() is None

    async def _close_client(self, code: int = 1000, reason: str = "") -> None:
        closing = asyncio.ensure_future(self.client.close(code=code, message=reason.encode()))
        if not await finished_within(closing, CLOSE_TIMEOUT):
            self.abort()

    def worker_lost(self) -> None:
        self.lost = True
        if self.upstream is not None:
            asyncio.ensure_future(self.upstream.close())

    async def _tell_rejoin(self) -> None:
        try:
            await self.client.send_str(p.event_message(events.Leave(WORKER_RESTARTED)).model_dump_json())
        except (ConnectionError, RuntimeError):
            pass

    async def _send_error(self, request_id, code: str, message: str) -> None:
        error = p.Error(id=request_id, code=code, message=message)
        await self.client.send_str(error.model_dump_json(exclude_none=True))


async def websocket(request: web.Request) -> web.StreamResponse:
    address = request.remote or ""
    refused = request.app[CONNECTIONS].acquire(address)
    if refused is not None:
        return refuse_connection(refused)
    try:
        config = request.app[STATE]["config"]
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=config.limits.max_message_bytes * HARD_SIZE_FACTOR)
        await ws.prepare(request)
        await Relay(request.app, ws, address, aborter(request)).run()
        return ws
    finally:
        request.app[CONNECTIONS].release(address)


# --- node-wide HTTP ----------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    workers = request.app[SUPERVISOR].workers
    alive = sum(w.alive for w in workers)
    return web.json_response({"status": "ok", "workers": len(workers), "workers_alive": alive})


async def readyz(request: web.Request) -> web.Response:
    if request.app[STATE]["draining"]:
        return web.json_response({"status": "draining"}, status=503)
    if not any(w.alive for w in request.app[SUPERVISOR].workers):
        return web.json_response({"status": "no_worker"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    workers = [w for w in request.app[SUPERVISOR].workers if w.alive]
    texts = await asyncio.gather(*(_fetch_text(request.app, w, "/metrics") for w in workers))
    body = merge_metrics({str(w.index): t for w, t in zip(workers, texts) if t is not None})
    body += _front_metrics(request.app)
    return web.Response(text=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def _fetch_text(app: web.Application, worker: Worker, path: str) -> Optional[str]:
    try:
        async with app[CLIENT].get(f"http://127.0.0.1:{worker.port}{path}",
                                   timeout=aiohttp.ClientTimeout(total=5)) as response:
            return await response.text()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


def merge_metrics(texts: dict[str, str]) -> str:
    """Prometheus text of several workers as one exposition: each family
    once, its samples from every worker with a ``worker`` label."""
    families: dict[str, list[str]] = {}
    headers: dict[str, list[str]] = {}
    for worker, text in texts.items():
        family = ""
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split(" ", 3)[2]
                families.setdefault(family, [])
                if len(headers.setdefault(family, [])) < 2:
                    headers[family].append(line)
            elif line and not line.startswith("#"):
                families.setdefault(family, []).append(_label(line, worker))
    out = []
    for family, samples in families.items():
        out.extend(headers.get(family, []))
        out.extend(samples)
    return "\n".join(out) + "\n"


def _label(sample: str, worker: str) -> str:
    name, sep, rest = sample.partition("{")
    if sep:
        return f'{name}{{worker="{worker}",{rest}'
    name, _, value = sample.partition(" ")
    return f'{name}{{worker="{worker}"}} {value}'


def _front_metrics(app: web.Application) -> str:
    supervisor = app[SUPERVISOR]
    alive = sum(w.alive for w in supervisor.workers)
    return (
        "# HELP pysfu_workers worker processes running\n# TYPE pysfu_workers gauge\n"
        f"pysfu_workers {alive}\n"
        "# HELP pysfu_worker_restarts_total workers restarted after they died\n"
        "# TYPE pysfu_worker_restarts_total counter\n"
        f"pysfu_worker_restarts_total {supervisor.restarts}\n"
        "# HELP pysfu_front_sessions client WebSockets relayed to workers now\n"
        "# TYPE pysfu_front_sessions gauge\n"
        f"pysfu_front_sessions {len(app[STATE]['sessions'])}\n"
    )


async def _forward(app: web.Application, worker: Worker, request: web.Request, body: bytes) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    headers.update(_from_front(app[SUPERVISOR], request.remote or ""))
    try:
        async with app[CLIENT].request(request.method, f"http://127.0.0.1:{worker.port}{request.path_qs}",
                                       headers=headers, data=body, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=30)) as response:
            payload = await response.read()
            kept = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=response.status, body=payload, headers=kept)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return error_response(503, "worker_unavailable", "try again")


def _from_front(supervisor: Supervisor, client_address: str) -> dict[str, str]:
    """Headers that tell a worker the client's address, believed there
    because they carry the supervisor's secret."""
    return {FORWARDED_FOR: client_address, FRONT_SECRET_HEADER: supervisor.front_secret}


def _any_worker(app: web.Application) -> Optional[Worker]:
    alive = [w for w in app[SUPERVISOR].workers if w.alive]
    return min(alive, key=lambda w: w.load()) if alive else None


def _unavailable() -> web.Response:
    return error_response(503, "worker_unavailable", "no worker is ready")


async def proxy_any(request: web.Request) -> web.StreamResponse:
    worker = _any_worker(request.app)
    if worker is None:
        return _unavailable()
    return await _forward(request.app, worker, request, await request.read())


async def admin_rooms(request: web.Request) -> web.Response:
    """GET: every worker's rooms, merged by name (and the other nodes' rooms);
    POST: create on the worker the room is on (409 there), else on the least
    loaded one (of the least-loaded node)."""
    app = request.app
    body = await request.read()
    if request.method == "POST":
        try:
            name = json.loads(body or b"null").get("name")
        except (ValueError, AttributeError):
            name = None
        if isinstance(name, str) and name:
            elsewhere = await _other_node(request, name, place_new=True)
            if elsewhere is not None:
                return elsewhere
        hosts = _hosts(app, name) if isinstance(name, str) else []
        worker = hosts[0] if hosts else place(name or "", app[SUPERVISOR].workers,
                                             app[STATE]["config"].worker_room_limit)
        if worker is None:
            return _unavailable()
        return await _forward(app, worker, request, body)
    workers = [w for w in app[SUPERVISOR].workers if w.alive]
    responses = await asyncio.gather(*(_forward(app, w, request, body) for w in workers))
    if not responses:
        return _unavailable()
    failed = next((r for r in responses if r.status != 200), None)
    if failed is not None:
        return failed
    rooms: dict[str, dict] = {}
    for response in responses:
        for room in json.loads(response.body)["rooms"]:
            seen = rooms.setdefault(room["name"], room)
            seen["num_participants"] = max(seen["num_participants"], room["num_participants"])
    cluster = app[CLUSTER]
    if cluster is not None:
        try:
            others = [n for n in await cluster.nodes() if n.id != cluster.id]
        except ClusterError as exc:
            return _cluster_unavailable(exc)
        for room in rooms.values():
            room["node"] = cluster.id
        rooms.update({room["name"]: {**room, "node": node.id} for node in others for room in node.rooms})
    return web.json_response({"rooms": list(rooms.values())})


async def _other_node(request: web.Request, room: str, place_new: bool = False) -> Optional[web.Response]:
    """With a cluster: the answer of the node that owns ``room`` (for a new
    room, the node it is placed on) when that is another node."""
    cluster = request.app[CLUSTER]
    if cluster is None or forwarded(request):
        return None
    try:
        node = await (cluster.place(room) if place_new else cluster.owner(room))
    except ClusterError as exc:
        return _cluster_unavailable(exc)
    if node is None or cluster.is_self(node):
        return None
    return await request.app[FORWARDER].forward(request, node.api)


def _cluster_unavailable(exc: ClusterError) -> web.Response:
    return error_response(503, "cluster_unavailable", str(exc))


async def admin_nodes(request: web.Request) -> web.Response:
    """The live nodes (or this node alone, without Redis). A worker checks
    the token first, as for every admin request."""
    worker = _any_worker(request.app)
    if worker is None:
        return _unavailable()
    checked = await _forward(request.app, worker, request, b"")
    if checked.status != 200:
        return checked
    cluster = request.app[CLUSTER]
    try:
        nodes = await cluster.nodes() if cluster else [_lone_node(request.app)]
    except ClusterError as exc:
        return _cluster_unavailable(exc)
    return web.json_response({"nodes": [node.model_dump() for node in nodes]})


def _lone_node(app: web.Application) -> NodeInfo:
    config, load = app[STATE]["config"], _node_load(app)
    return NodeInfo(id=config.cluster.node_id or "local", url=config.node_url, api=api_url(config.node_url),
                    rooms=load.rooms, participants=sum(r["num_participants"] for r in load.rooms),
                    packets_per_second=load.packet_rate)


def _hosts(app: web.Application, room: str) -> list[Worker]:
    return [w for w in app[SUPERVISOR].workers if w.alive and w.sessions[room] > 0]


async def admin_room(request: web.Request) -> web.Response:
    """A room's admin request goes to the workers its participants are on:
    changes to all of them, reads and participant actions to the first that
    knows the answer (a participant is only found on its own worker)."""
    app = request.app
    body = await request.read()
    match = ROOM_PATH.match(request.path)
    elsewhere = await _other_node(request, match.group(1)) if match else None
    if elsewhere is not None:
        return elsewhere
    hosts = _hosts(app, match.group(1)) if match else []
    if not hosts:  # an empty room made by POST /api/rooms lives on one worker: ask all
        hosts = [w for w in app[SUPERVISOR].workers if w.alive]
    if not hosts:
        return _unavailable()
    if "/participants/" in request.path or request.method == "GET" or request.path.endswith("/recording"):
        response = None
        for worker in hosts:
            response = await _forward(app, worker, request, body)
            if response.status != 404:
                return response
        return response
    responses = await asyncio.gather(*(_forward(app, w, request, body) for w in hosts))
    return next((r for r in responses if r.status < 300), responses[0])
