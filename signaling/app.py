"""The aiohttp application: demo page, /ws signaling, /metrics, /healthz."""

from __future__ import annotations

import weakref

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

from sfu.metrics import SfuCollector
from sfu.room import RoomRegistry

from .config import ServerConfig
from .session import Session

ROOMS = web.AppKey("rooms", RoomRegistry)
CONFIG = web.AppKey("config", ServerConfig)
METRICS = web.AppKey("metrics", CollectorRegistry)
SOCKETS = web.AppKey("sockets", weakref.WeakSet)

MAX_MESSAGE_BYTES = 256 * 1024


def create_app(config: ServerConfig | None = None) -> web.Application:
    config = config or ServerConfig()
    app = web.Application()
    app[CONFIG] = config
    app[ROOMS] = RoomRegistry(config.sfu)
    app[METRICS] = CollectorRegistry()
    app[METRICS].register(SfuCollector(app[ROOMS]))
    app[SOCKETS] = weakref.WeakSet()
    app.router.add_get("/ws", websocket)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", index)
    app.router.add_static("/", config.static_dir, show_index=False)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_close_rooms)
    return app


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    await Session(ws, request.app[ROOMS]).run()
    return ws


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[CONFIG].static_dir / "index.html")


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[SOCKETS]):
        await ws.close(message=b"server shutdown")


async def _close_rooms(app: web.Application) -> None:
    await app[ROOMS].close()
