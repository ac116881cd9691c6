"""Opus (RFC 7587): every packet decodes on its own; nothing to detect or munge."""

from __future__ import annotations

from . import CodecHandler


class OpusHandler(CodecHandler):
    name = "opus"
    kind = "audio"
    ffmpeg_name = "opus"
    webm = True


HANDLER = OpusHandler()
