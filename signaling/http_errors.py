"""The body of every HTTP error pysfu answers (the admin API, /dev/token, a
refused WebSocket upgrade, the front, a forwarded request):
``{"error": {"code": "...", "message": "..."}}``."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(status: int, code: str, message: str) -> web.Response:
    body = ErrorResponse(error=ErrorBody(code=code, message=message))
    return web.json_response(body.model_dump(), status=status)
