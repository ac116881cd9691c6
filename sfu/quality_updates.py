"""Connection quality changes go out to the room in batches: one
``connection_quality`` event per ``BATCH`` seconds carrying every change
since the last, instead of one event to everyone per change. In a room of
150 whose connections suffer together (a loaded server, a shared uplink)
most ratings change within a second: 150 × 149 events a second one by one,
149 batched. LiveKit's room sends its quality updates the same way.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Optional

BATCH = 0.5  # seconds a change may wait for others


class QualityUpdates:
    """Collects the latest update per participant; ``send`` gets them all at once."""

    def __init__(self, send: Callable[[list[dict]], None], batch: float = BATCH) -> None:
        self._send = send
        self._batch = batch
        self._pending: dict[str, dict] = {}
        self._handle: Optional[asyncio.TimerHandle] = None

    def add(self, participant_id: str, update: dict) -> None:
        """A participant's newest rating replaces any it had waiting."""
        self._pending[participant_id] = update
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self._batch, self._flush)

    def forget(self, participant_id: str) -> None:
        """Someone left: its rating is no news to anyone."""
        self._pending.pop(participant_id, None)

    def stop(self) -> None:
        self._pending.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _flush(self) -> None:
        self._handle = None
        updates, self._pending = list(self._pending.values()), {}
        if updates:
            self._send(updates)
