"""Room-wide updates done a few milliseconds per loop turn.

A change of speakers in a room of 150 refills every subscriber's slots
(new down-tracks, a ``slots_changed`` event, a new allocation): 50-100 ms
of Python in one callback, during which no packet is forwarded and audio
queues up behind it. Paced, each loop turn updates subscribers for at most
``BUDGET`` seconds and then lets the socket reader run (audio first:
sfu/video_backlog.py), so the change reaches everyone within a few turns
and nobody's audio waits for it.

A subscriber queued again before its turn is updated once; each update
reads the room's state when it runs, so a later change overtakes an
earlier one that had not reached everybody yet.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Generic, Hashable, Iterable, Optional, TypeVar

#: Seconds of updates per loop turn.
BUDGET = 0.005

Context = TypeVar("Context")
Item = TypeVar("Item", bound=Hashable)


class PacedUpdates(Generic[Context, Item]):
    """``update(context, item)`` for each queued item, ``context`` being
    ``prepare()``'s (the part shared by every item) of that loop turn."""

    def __init__(
        self, prepare: Callable[[], Context], update: Callable[[Context, Item], None], budget: float = BUDGET,
    ) -> None:
        self._prepare = prepare
        self._update = update
        self._budget = budget
        self._pending: dict[Item, None] = {}  # in order, once each
        self._handle: Optional[asyncio.Handle] = None

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, items: Iterable[Item]) -> None:
        """Queue these items; the first update starts on the next loop turn."""
        for item in items:
            self._pending[item] = None
        if self._pending and self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._run)

    def discard(self, item: Item) -> None:
        self._pending.pop(item, None)

    def close(self) -> None:
        self._pending.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None
        deadline = time.perf_counter() + self._budget
        pending = self._pending
        try:
            context = self._prepare()
            while pending:
                item = next(iter(pending))
                del pending[item]
                self._update(context, item)
                if time.perf_counter() >= deadline:
                    break
        finally:  # the rest goes on next turn, even after an update failed
            if pending and self._handle is None:
                self._handle = asyncio.get_running_loop().call_soon(self._run)
