"""One timer for the periodic work of every participant on a loop.

Each participant used to run its own task sleeping TICK (layer decisions,
receiver reports, connection quality). In a room of N that is 4N wake-ups a
second, each a task step, a new future and a new timer, and each one wakes
a process that would otherwise sleep until the next packet: in the
8-subscriber fan-out, an idle room cost 12 ms of CPU a second, as much
as forwarding 100 packets. A ``Ticker`` runs every job registered for its
period from one timer. A beat's jobs are paced (sfu/paced_updates.py): at
150 participants they take several milliseconds, so they run a few
milliseconds per loop turn and the socket reader runs between them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Optional

from .paced_updates import PacedUpdates

log = logging.getLogger(__name__)

#: A job gets the beat's time (time.monotonic()).
Job = Callable[[float], None]


class Ticker:
    def __init__(self, period: float, loop: asyncio.AbstractEventLoop) -> None:
        self.period = period
        self.loop = loop
        self._jobs: dict[Job, None] = {}  # in the order they came
        self._pass: PacedUpdates[float, Job] = PacedUpdates(time.monotonic, _run_job)
        self._handle: Optional[asyncio.TimerHandle] = None
        self._due = 0.0

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: Job) -> None:
        """Run ``job(now)`` every period from the next beat on."""
        self._jobs[job] = None
        if self._handle is None:
            self._due = self.loop.time() + self.period
            self._handle = self.loop.call_at(self._due, self._beat)

    def discard(self, job: Job) -> None:
        """Stop running ``job``; the timer stops with the last job."""
        self._jobs.pop(job, None)
        self._pass.discard(job)
        if not self._jobs:
            self.close()

    def close(self) -> None:
        self._jobs.clear()
        self._pass.close()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _beat(self) -> None:
        now = self.loop.time()
        # a steady rate; a beat that came more than a period late starts afresh
        self._due = self._due + self.period if now - self._due < self.period else now + self.period
        self._handle = self.loop.call_at(self._due, self._beat)
        self._pass.add(list(self._jobs))


def _run_job(now: float, job: Job) -> None:
    try:
        job(now)
    except Exception:
        log.exception("periodic job %r failed", job)


_tickers: dict[float, Ticker] = {}


def shared(period: float) -> Ticker:
    """The running loop's ticker for ``period`` (seconds)."""
    loop = asyncio.get_running_loop()
    ticker = _tickers.get(period)
    if ticker is None or ticker.loop is not loop:
        if ticker is not None:
            ticker.close()  # left over from a finished event loop (tests)
        ticker = _tickers[period] = Ticker(period, loop)
    return ticker
