"""Admin requests about a room that lives on another node go to that node
(issue 7): the request is replayed there with the same method, path, body
and token, and its answer is passed back as it is."""

from __future__ import annotations

import asyncio
from typing import Optional

import aiohttp
from aiohttp import web

from ..http_errors import error_response

#: Marks a forwarded request: the receiving node answers it itself, so a
#: request never bounces between nodes that disagree for a moment.
FORWARDED_BY = "X-Pysfu-Forwarded-By"
TIMEOUT = 30  # stopping a recording answers once the file is complete
PASSED_HEADERS = ("Authorization", "Content-Type")


class Forwarder:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._session: Optional[aiohttp.ClientSession] = None

    async def forward(self, request: web.Request, api: str) -> web.Response:
        """Replay ``request`` at the node whose HTTP base URL is ``api``."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        headers = {h: request.headers[h] for h in PASSED_HEADERS if h in request.headers}
        headers[FORWARDED_BY] = self.node_id
        try:
            async with self._session.request(
                request.method, api + request.path_qs, data=await request.read(), headers=headers,
            ) as answer:
                body = await answer.read()
                content_type = answer.headers.get("Content-Type")
                response = web.Response(status=answer.status, body=body or None)
                if content_type and body:
                    response.headers["Content-Type"] = content_type
                return response
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            message = f"the node that owns this room ({api}) did not answer: {exc or type(exc).__name__}"
            return error_response(502, "node_unreachable", message)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def forwarded(request: web.Request) -> bool:
    return FORWARDED_BY in request.headers
