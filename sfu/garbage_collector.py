"""When Python's cyclic garbage collector walks the heap of a serving process.

CPython makes a full (generation 2) collection whenever the objects that
survived into its oldest generation have grown by a quarter, and a full
collection walks every tracked object of the process while the event loop
waits. Measured in s3 at 60 participants: 100 to 170 ms for 170,000 to
280,000 objects, every two seconds while the room fills, and 400 ms when it
empties. Every packet that arrives meanwhile waits: one such pause in a
15 s window puts about 1 % of the packets past 100 ms.

Almost all of that heap lives as long as its participant, and what a
departed participant leaves in reference cycles (aiortc's objects form
them) is the garbage worth a walk. So a serving process (``pysfu serve``,
each worker; not an embedding program, whose heap is its own):

* freezes what exists at start (modules, classes, settings: never garbage)
  out of every collection;
* keeps Python's young collections (they walk new objects only, a few ms)
  but starts no full one by itself;
* makes the full collection when it is worth its pause: once participants
  have left (``DEPARTED_SHARE`` of the most it held since the last one, at
  least ``DEPARTED_MIN``, at most every ``MIN_GAP`` seconds), as soon as
  the process holds no participant (nobody waits on it then), and at the
  latest every ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Callable, Iterator, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .metrics import Histogram

log = logging.getLogger(__name__)

#: A generation-2 threshold Python never reaches: no automatic full collection.
NEVER = 2**30
CHECK_EVERY = 5.0  # seconds between two looks at whether a collection is due
DEPARTED_SHARE = 0.1
DEPARTED_MIN = 5
MIN_GAP = 30.0  # seconds between two collections for departures
PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SLOW_PAUSE = 0.1  # a collection longer than this is logged as a warning


class GarbageCollector:
    def __init__(
        self, interval: float, participants: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic, check_every: float = CHECK_EVERY,
    ) -> None:
        """``participants``: how many participants the process holds now."""
        self.interval = interval
        self.participants = participants
        self.clock = clock
        self.check_every = check_every
        self.collections = 0
        self.pauses = Histogram(PAUSE_BUCKETS)
        self._thresholds: Optional[tuple[int, int, int]] = None
        self._last = 0.0
        self._most = 0  # participants held at most since the last collection
        self._collected_empty = True
        self._handle: Optional[asyncio.TimerHandle] = None

    def start(self) -> None:
        """Freeze what exists and take over full collections."""
        self._thresholds = gc.get_threshold()
        gc.collect()
        gc.freeze()
        young, middle, _ = self._thresholds
        gc.set_threshold(young, middle, NEVER)
        self._last = self.clock()
        self._handle = asyncio.get_running_loop().call_later(self.check_every, self._check)

    def stop(self) -> None:
        """Give the collector back to Python as it was."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thresholds is not None:
            gc.unfreeze()
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def _check(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.check_every, self._check)
        reason = self.due(self.participants(), self.clock())
        if reason is not None:
            self.collect(reason)

    def due(self, held: int, now: float) -> Optional[str]:
        """Why a full collection is due now (None: it is not)."""
        self._most = max(self._most, held)
        if held:
            self._collected_empty = False
        departed = self._most - held
        if held == 0 and not self._collected_empty:
            return "the process is empty"
        if departed >= max(DEPARTED_MIN, DEPARTED_SHARE * self._most) and now - self._last >= MIN_GAP:
            return f"{departed} participants left"
        if now - self._last >= self.interval:
            return "interval"
        return None

    def collect(self, reason: str = "asked") -> float:
        """Collect everything but what was frozen at start; the pause in seconds."""
        started = time.perf_counter()
        freed = gc.collect()
        seconds = time.perf_counter() - started
        self.collections += 1
        self.pauses.observe(seconds)
        self._last = self.clock()
        held = self.participants()
        self._most = held
        self._collected_empty = held == 0
        log.log(logging.WARNING if seconds > SLOW_PAUSE else logging.INFO,
                "full garbage collection (%s): %.0f ms, %d objects freed", reason, seconds * 1000, freed)
        return seconds


class GarbageCollectorMetrics:
    """The collector's figures for /metrics (a prometheus-client collector)."""

    def __init__(self, collector: GarbageCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterator:
        yield CounterMetricFamily("pysfu_gc_full_collections", "full garbage collections pysfu made",
                                  value=self.collector.collections)
        yield self.collector.pauses.family(
            "pysfu_gc_pause_seconds", "how long the event loop waited for each full garbage collection")
        yield GaugeMetricFamily("pysfu_gc_frozen_objects", "objects frozen out of collections at start",
                                value=gc.get_freeze_count())
