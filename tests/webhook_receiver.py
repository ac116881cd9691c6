"""An HTTP server on loopback that records the webhooks POSTed to it."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from .conftest import free_port


class Receiver:
    """An aiohttp server recording every POST; fails or stalls on demand."""

    def __init__(self, fail_first: int = 0, delay: float = 0, redirect_to: str = "") -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        self.delay = delay
        self.redirect_to = redirect_to
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        await asyncio.sleep(self.delay)
        if self.redirect_to:
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        if len(self.received) <= self.fail_first:
            return web.Response(status=500)
        return web.Response(status=200)

    async def __aenter__(self) -> "Receiver":
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]
