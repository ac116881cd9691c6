"""Frames an aiortc test peer decodes from a remote track."""

from __future__ import annotations

import asyncio
import time


async def count_frames(track, seconds: float) -> list:
    """Decode frames from a remote track for a while; returns them."""
    frames = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frames.append(await asyncio.wait_for(track.recv(), max(0.1, deadline - time.monotonic())))
        except asyncio.TimeoutError:
            break
    return frames


async def first_frame(track, timeout: float = 10.0):
    """The first frame decoded: a new subscriber's video starts at a key
    frame, which a busy machine may take a while to bring."""
    return await asyncio.wait_for(track.recv(), timeout)
