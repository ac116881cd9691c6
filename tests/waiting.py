"""Waiting on a condition, bounded, instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time


async def eventually(predicate, timeout: float = 10, interval: float = 0.1, message=""):
    """Wait until predicate() is truthy (bounded); return its value.

    ``message``: the failure's text, or a function giving it then (the
    state at the deadline, not at the start)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(text or f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def eventually_async(fetch, check=bool, timeout: float = 15, interval: float = 0.2):
    """Await fetch() until check(value) holds (bounded); return that value.

    For probes that cross a process or a page (HTTP, Redis, page.evaluate),
    hence a slower default pace than ``eventually``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {value!r}")
        await asyncio.sleep(interval)
