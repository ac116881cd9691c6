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
