"""When Python's cyclic garbage collector walks the heap of a serving process.

CPython makes a full (generation 2) collection whenever enough objects
have survived into its oldest generation, and a full collection walks
every tracked object of the process while the event loop waits. Measured
in s3 at 60 participants: 100 to 170 ms for 170,000 to 280,000 objects,
every two seconds while the room fills, and 400 ms when it empties. Every
packet that arrives meanwhile waits: one such pause in a 15 s window puts
about 1 % of the packets past 100 ms.

So a serving process (``pysfu serve``, each worker; not an embedding
program, whose heap is its own) takes the full collections in hand:

* at start, what exists (modules, classes, settings: never garbage) is
  frozen (``gc.freeze``): no collection walks it again;
* Python keeps its young collections (they walk new objects only) but no
  longer starts full ones;
* every ``gc_interval`` seconds a collection of everything not frozen
  frees the cycles made since the last one, and freezes what survives: it
  walks what was made in between, not the whole heap;
* every ``gc_full_interval`` seconds, or as soon as the process holds no
  participant, the frozen objects are thawed and the whole heap collected:
  the cycles of participants who left meanwhile (aiortc's objects form
  cycles) are freed then. This is the one pause left, its duration in the
  metrics.
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
PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: A full collection longer than this is logged as a warning.
SLOW_PAUSE = 0.1


class GarbageCollector:
    def __init__(
        self, interval: float, full_interval: float, idle: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``idle``: whether the process holds no participant (a full
        collection then costs nobody anything)."""
        self.interval = interval
        self.full_interval = full_interval
        self.idle = idle
        self.clock = clock
        self.collections = {"young": 0, "full": 0}
        self.pauses = {"young": Histogram(PAUSE_BUCKETS), "full": Histogram(PAUSE_BUCKETS)}
        self._thresholds: Optional[tuple[int, int, int]] = None
        self._last_full = 0.0
        self._idle_collected = False
        self._handle: Optional[asyncio.TimerHandle] = None

    def start(self) -> None:
        """Freeze what exists and take over full collections."""
        self._thresholds = gc.get_threshold()
        gc.collect()
        gc.freeze()
        young, middle, _ = self._thresholds
        gc.set_threshold(young, middle, NEVER)
        self._last_full = self.clock()
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        """Give the collector back to Python as it was."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thresholds is not None:
            gc.unfreeze()
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def _tick(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)
        now, idle = self.clock(), self.idle()
        if idle and not self._idle_collected:  # once each time the process empties
            self.collect_full(now)
            self._idle_collected = True
        elif now - self._last_full >= self.full_interval:
            self.collect_full(now)
        else:
            self.collect_young()
        if not idle:
            self._idle_collected = False

    def collect_young(self) -> None:
        """Collect what is not frozen, then freeze what survived."""
        self._collect("young")

    def collect_full(self, now: Optional[float] = None) -> None:
        """Thaw, collect the whole heap, freeze again."""
        gc.unfreeze()
        seconds, freed = self._collect("full")
        self._last_full = self.clock() if now is None else now
        level = logging.WARNING if seconds > SLOW_PAUSE else logging.INFO
        log.log(level, "full garbage collection: %.0f ms, %d objects freed, %d kept",
                seconds * 1000, freed, gc.get_freeze_count())

    def _collect(self, kind: str) -> tuple[float, int]:
        started = time.perf_counter()
        freed = gc.collect()
        gc.freeze()
        seconds = time.perf_counter() - started
        self.collections[kind] += 1
        self.pauses[kind].observe(seconds)
        return seconds, freed


class GarbageCollectorMetrics:
    """The collector's figures for /metrics (a prometheus-client collector)."""

    def __init__(self, collector: GarbageCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterator:
        collections = CounterMetricFamily(
            "pysfu_gc_collections", "garbage collections pysfu made (young: since the last; full: the heap)",
            labels=["kind"])
        pauses = []
        for kind, count in self.collector.collections.items():
            collections.add_metric([kind], count)
            pauses.append((kind, self.collector.pauses[kind]))
        yield collections
        for kind, histogram in pauses:
            yield histogram.family(f"pysfu_gc_{kind}_pause_seconds",
                                   f"how long the event loop waited for each {kind} garbage collection")
        yield GaugeMetricFamily("pysfu_gc_frozen_objects", "objects frozen out of collections until the next full one",
                                value=gc.get_freeze_count())
