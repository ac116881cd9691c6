"""The aiohttp application: demo page, /ws signaling, /api admin, /metrics,
/healthz, /readyz, and /dev/token in development mode only."""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
import weakref
from collections import Counter
from typing import AsyncIterator, Optional

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

from sfu import receive_buffers, udp_mux
from sfu.config import IceConfig
from sfu.garbage_collector import GarbageCollector, GarbageCollectorMetrics
from sfu.load_manager import LoadManager
from sfu.loop_load import LoopLoad
from sfu.transport import local_addresses
from sfu.metrics import SfuCollector
from sfu.room import RoomObserver, RoomRegistry

from .admin import setup_admin
from .auth import DEV_KEY, VideoGrant, create_token
from .config import ServerConfig
from .http_errors import error_response
from .limits import ConnectionLimiter, JoinLimiter, LimitCode
from .resume import ResumeTokens
from .scaling.cluster import Cluster, registry_load
from .server_metrics import ServerMetrics
from .session import Session
from .webhooks import WebhookSender

log = logging.getLogger(__name__)

ROOMS = web.AppKey("rooms", RoomRegistry)
CONFIG = web.AppKey("config", ServerConfig)
METRICS = web.AppKey("metrics", CollectorRegistry)
SERVER_METRICS = web.AppKey("server_metrics", ServerMetrics)
SOCKETS = web.AppKey("sockets", weakref.WeakSet)
JOINS = web.AppKey("joins", JoinLimiter)
CONNECTIONS = web.AppKey("connections", ConnectionLimiter)
SESSIONS = web.AppKey("sessions", weakref.WeakSet)
WEBHOOKS = web.AppKey("webhooks", Optional[WebhookSender])
DRAINING = web.AppKey("draining", asyncio.Event)
CLUSTER = web.AppKey("cluster", Optional[Cluster])
RESUMES = web.AppKey("resumes", ResumeTokens)
LOAD = web.AppKey("load", LoadManager)

#: aiohttp closes a connection (code 1009) whose message exceeds this many
#: times the configured limit; up to it, the session answers message_too_large.
HARD_SIZE_FACTOR = 4
FORWARDED_FOR = "X-Forwarded-For"
#: A worker believes X-Forwarded-For only beside this header holding the
#: secret its supervisor gave it (random per start, known to the front alone).
FRONT_SECRET_HEADER = "X-Pysfu-Front"
FRONT_SECRET = web.AppKey("front_secret", str)


def create_app(config: ServerConfig | None = None, observer: Optional[RoomObserver] = None) -> web.Application:
    """``observer`` also gets the room events (a worker's cluster agent)."""
    config = _with_dev_key(config or ServerConfig())
    app = web.Application(handler_args=handler_args(config))
    app[CONFIG] = config
    app[WEBHOOKS] = _webhook_sender(config)
    app[DRAINING] = asyncio.Event()
    app[CLUSTER] = _cluster(app) if config.cluster.enabled else None
    observer = _chain(app[WEBHOOKS].observe if app[WEBHOOKS] else None,
                      app[CLUSTER].observe if app[CLUSTER] else None, observer)
    app[ROOMS] = RoomRegistry(config.sfu, capacity=config.limits.room_capacity, observer=observer)
    app[LOAD] = LoadManager(config.sfu.load, app[ROOMS].set_shed, LoopLoad(socket_wait=udp_mux.take_worst_wait),
                           would_shed=app[ROOMS].would_shed)
    receive_buffers.apply(config.sfu)
    app[METRICS] = CollectorRegistry()
    app[METRICS].register(SfuCollector(app[ROOMS], load=app[LOAD]))
    ProcessCollector(registry=app[METRICS])
    app[SERVER_METRICS] = ServerMetrics(app[METRICS], lambda: app[WEBHOOKS].stats if app[WEBHOOKS] else Counter(),
                                        lambda: app[LOAD].measure.last_lag)
    app[SOCKETS] = weakref.WeakSet()
    app[JOINS] = JoinLimiter(config.limits.joins_per_minute)
    app[CONNECTIONS] = connection_limiter(config)
    app[SESSIONS] = weakref.WeakSet()
    app[RESUMES] = ResumeTokens()
    app.router.add_get("/ws", websocket)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    setup_admin(app, app[ROOMS], config, app[CLUSTER])
    if config.dev:
        app.router.add_get("/dev/token", dev_token)
    app.router.add_get("/", index)
    app.router.add_static("/", config.static_dir, show_index=False)
    app.cleanup_ctx.append(_udp_port)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_close_rooms)
    if config.open:
        log.warning("no API keys configured: anyone may join without a token (open mode)")
    return app


def manage_garbage_collection(app: web.Application) -> None:
    """The process serving ``app`` makes its own full garbage collections
    (sfu/garbage_collector.py), unless ``gc_interval`` is 0. For the one
    application of a process (``pysfu serve``, a worker), before it starts."""
    config = app[CONFIG]
    if not config.gc_interval:
        return
    rooms = app[ROOMS]
    collector = GarbageCollector(config.gc_interval, participants=lambda: len(rooms.participants()))
    app[METRICS].register(GarbageCollectorMetrics(collector))

    async def running(app: web.Application) -> AsyncIterator[None]:
        collector.start()
        yield
        collector.stop()

    app.cleanup_ctx.append(running)


def handler_args(config: ServerConfig) -> dict:
    """aiohttp's per-connection settings: its keep-alive timer also closes a
    connection that has not sent a whole request header in time."""
    return {"keepalive_timeout": config.limits.header_timeout}


def connection_limiter(config: ServerConfig) -> ConnectionLimiter:
    return ConnectionLimiter(config.limits.max_connections, config.limits.connections_per_address)


#: HTTP status of a WebSocket upgrade refused by a connection cap.
REFUSED_STATUS = {LimitCode.SERVER_FULL: 503, LimitCode.TOO_MANY_CONNECTIONS: 429}


def refuse_connection(code: str) -> web.Response:
    message = "the server is full" if code == LimitCode.SERVER_FULL else "too many connections from this address"
    return error_response(REFUSED_STATUS[code], code, message)


def _chain(*observers: Optional[RoomObserver]) -> RoomObserver:
    present = [o for o in observers if o is not None]

    def observe(event: str, payload: dict) -> None:
        for observer in present:
            observer(event, payload)

    return observe


def _with_dev_key(config: ServerConfig) -> ServerConfig:
    """Development mode makes up the secret of its own development key, which
    signs /dev/token's tokens: the operator's keys never sign for strangers."""
    if config.dev and not config.dev_secret:
        return config.model_copy(update={"dev_secret": secrets.token_urlsafe(32)})
    return config


def _webhook_sender(config: ServerConfig) -> Optional[WebhookSender]:
    settings = config.webhooks
    if not settings.urls:
        return None
    api_key = settings.api_key or next(iter(config.keys))  # never the development key
    return WebhookSender(settings, api_key, config.keys[api_key])


def _cluster(app: web.Application) -> Cluster:
    """This node's membership of the Redis cluster (issue 7)."""
    config = app[CONFIG]
    return Cluster(config.cluster, config.node_url, lambda: registry_load(app[ROOMS]), app[DRAINING].is_set)


class MediaPortError(OSError):
    """Single-port mode's UDP port cannot be bound (`pysfu serve` exits saying so)."""


def bind_media_ports(ice: IceConfig) -> list[udp_mux.UdpMux]:
    """Single-port mode: the shared media sockets, one per ICE address."""
    try:
        return udp_mux.open_shared(local_addresses(ice), ice.udp_port)
    except OSError as exc:
        raise MediaPortError(exc.errno, f"{exc.strerror} (--udp-port chooses another port, "
                             "--udp-port 0 a port per connection)") from None


async def _udp_port(app: web.Application) -> AsyncIterator[None]:
    """Single-port mode: bind the shared media sockets at start (a taken port
    stops the server here, not at the first join) and close them at the end."""
    ice = app[CONFIG].sfu.ice
    muxes = bind_media_ports(ice) if ice.udp_port else []
    if muxes:
        log.info("media on UDP %s", ", ".join(f"{m.sockname[0]}:{m.sockname[1]}" for m in muxes))
    yield
    udp_mux.close_shared(muxes)


async def _background(app: web.Application) -> AsyncIterator[None]:
    if app[CLUSTER]:
        await app[CLUSTER].start()
    app[LOAD].start()
    if app[WEBHOOKS]:
        app[WEBHOOKS].start()
    yield
    app[LOAD].stop()
    if app[WEBHOOKS]:
        await app[WEBHOOKS].stop()
    if app[CLUSTER]:
        await app[CLUSTER].stop()


async def websocket(request: web.Request) -> web.StreamResponse:
    address = _client_address(request)
    refused = request.app[CONNECTIONS].acquire(address)
    if refused is not None:
        return refuse_connection(refused)
    try:
        return await _serve_websocket(request, address)
    finally:
        request.app[CONNECTIONS].release(address)


async def _serve_websocket(request: web.Request, address: str) -> web.WebSocketResponse:
    config = request.app[CONFIG]
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=config.limits.max_message_bytes * HARD_SIZE_FACTOR)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    session = Session(
        ws, request.app[ROOMS], config,
        address=address, joins=request.app[JOINS],
        draining=request.app[DRAINING].is_set, metrics=request.app[SERVER_METRICS],
        cluster=request.app[CLUSTER],
        resumes=request.app[RESUMES],
        abort=aborter(request),
    )
    request.app[SESSIONS].add(session)
    await session.run()
    return ws


def aborter(request: web.Request):
    """Cuts the request's connection at once (a client that does not read)."""

    def abort() -> None:
        if request.transport is not None:
            request.transport.abort()

    return abort


def _client_address(request: web.Request) -> str:
    """A worker behind the node's front process learns the client's address
    from the front; nobody else may set it (any local process can reach a
    worker's port, but only the front knows the secret)."""
    secret = request.app.get(FRONT_SECRET)
    if secret and FORWARDED_FOR in request.headers and _is_secret(request.headers.get(FRONT_SECRET_HEADER), secret):
        return request.headers[FORWARDED_FOR]
    return request.remote or ""


def _is_secret(given: Optional[str], secret: str) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), secret.encode())


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[CONFIG].static_dir / "index.html")


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for new joins: 503 while draining (SIGTERM)."""
    if request.app[DRAINING].is_set():
        return web.json_response({"status": "draining"}, status=503)
    return web.json_response({"status": "ready"})


async def dev_token(request: web.Request) -> web.Response:
    """Development only: a join token for ?room=R&name=N (all media grants),
    signed with the development key, for an identity the server makes up, so
    that no caller can take over (or kick) someone else's identity."""
    room = request.query.get("room", "")
    name = request.query.get("name", "")
    if not room or len(room) > 128 or len(name) > 128:
        return error_response(400, "bad_request", "give ?room= (and ?name=)")
    identity = f"dev-{secrets.token_hex(8)}"
    grant = VideoGrant(room=room, roomJoin=True)
    token = create_token(DEV_KEY, request.app[CONFIG].dev_secret, identity, grant, name=name, ttl=3600)
    return web.json_response({"token": token, "identity": identity})


async def drain(app: web.Application, grace: float) -> None:
    """Stop taking joins, send every client ``leave`` (server_shutdown), and
    wait up to ``grace`` seconds for their sockets to close and the queued
    webhooks to go out."""
    app[DRAINING].set()
    log.info("draining: %d participants told to leave", len(app[ROOMS].participants()))
    await app[ROOMS].close("server_shutdown")
    deadline = time.monotonic() + grace
    while any(not ws.closed for ws in app[SOCKETS]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if app[WEBHOOKS]:
        await app[WEBHOOKS].stop(flush_timeout=max(0.1, deadline - time.monotonic()))


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[SOCKETS]):
        await ws.close(message=b"server shutdown")


async def _close_rooms(app: web.Application) -> None:
    await app[ROOMS].close()
