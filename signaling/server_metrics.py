"""Signaling-side metrics: join latency, event-loop lag, errors, webhooks.

The forwarding core's figures come from sfu.metrics.SfuCollector; these
are the ones only the server around it knows.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Callable, Optional

from prometheus_client import CollectorRegistry, Counter as PromCounter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LAG_INTERVAL = 0.25


class ServerMetrics:
    """Metrics owned by the signaling server, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, webhook_stats: Callable[[], Counter]) -> None:
        self.join_seconds = Histogram(
            "pysfu_join_seconds", "time from a join request to its response",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry,
        )
        self.errors = PromCounter(
            "pysfu_signaling_errors", "error messages sent to clients, by code", ["code"], registry=registry,
        )
        self.outbox_overflows = PromCounter(
            "pysfu_signaling_outbox_overflows",
            "messages that did not fit a slow reader's outbox: event dropped, or the connection closed",
            ["outcome"], registry=registry,
        )
        self.loop_lag = 0.0
        self._lag_task: Optional[asyncio.Task] = None
        registry.register(_LoopAndWebhooks(self, webhook_stats))

    def start(self) -> None:
        self._lag_task = asyncio.ensure_future(self._watch_lag())

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            await asyncio.gather(self._lag_task, return_exceptions=True)

    async def _watch_lag(self) -> None:
        """How late the loop wakes a sleeper: a busy media path shows here."""
        while True:
            start = time.perf_counter()
            await asyncio.sleep(LAG_INTERVAL)
            self.loop_lag = max(0.0, time.perf_counter() - start - LAG_INTERVAL)


def _live_tasks() -> int:
    try:
        return sum(1 for task in asyncio.all_tasks() if not task.done())
    except RuntimeError:  # collected outside the event loop's thread
        return 0


class _LoopAndWebhooks(Collector):
    def __init__(self, metrics: ServerMetrics, webhook_stats: Callable[[], Counter]) -> None:
        self._metrics = metrics
        self._webhook_stats = webhook_stats

    def collect(self):
        yield GaugeMetricFamily(
            "pysfu_event_loop_lag_seconds", "how late the event loop woke a 250 ms sleep, last sample",
            value=self._metrics.loop_lag,
        )
        yield GaugeMetricFamily(
            "pysfu_asyncio_tasks", "asyncio tasks not yet done (a leak grows it)", value=_live_tasks(),
        )
        family = CounterMetricFamily("pysfu_webhooks", "webhook deliveries by outcome", labels=["outcome"])
        stats = self._webhook_stats()
        for outcome in ("delivered", "retries", "failed", "dropped"):
            family.add_metric([outcome], stats.get(outcome, 0))
        yield family
