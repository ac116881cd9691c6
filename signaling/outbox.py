"""What the server has yet to write to one client: a FIFO of JSON texts,
bounded in characters, so that a client that stops reading costs the server
bounded memory.

Each text is essential (a response, a roster or track change, an offer: the
client's view of the room is wrong without it) or droppable (chat, data,
reactions, speakers, connection quality: a slow reader may miss some).  When
a text does not fit, a droppable one is dropped; for an essential one every
queued droppable text goes first, and if it still does not fit the outbox
refuses it: the client is too slow to keep, and its session closes.

A text larger than the whole budget is taken when the outbox is empty, so a
big ``join_response`` always goes out; memory stays below the budget plus
one message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Optional


class Outbox:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        #: Characters queued now.
        self.size = 0
        #: Droppable texts dropped so far.
        self.dropped = 0
        self._items: deque[tuple[str, bool]] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, text: str, droppable: bool = False) -> bool:
        """Queue ``text``; False if it was refused (or dropped, when droppable)."""
        if not self._fits(len(text)):
            if droppable:
                self.dropped += 1
                return False
            self._drop_droppable()
            if not self._fits(len(text)):
                return False
        self._items.append((text, droppable))
        self.size += len(text)
        self._ready.set()
        return True

    async def get(self) -> Optional[str]:
        """The next text, oldest first; None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        text, _ = self._items.popleft()
        self.size -= len(text)
        return text

    def close(self) -> None:
        """No more texts: ``get`` returns what is queued, then None."""
        self._closed = True
        self._ready.set()

    def _fits(self, length: int) -> bool:
        return not self._items or self.size + length <= self.budget

    def _drop_droppable(self) -> None:
        kept = deque(item for item in self._items if not item[1])
        self.dropped += len(self._items) - len(kept)
        self._items = kept
        self.size = sum(len(text) for text, _ in kept)
