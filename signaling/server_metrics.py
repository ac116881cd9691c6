"""Signaling-side metrics: join latency, event-loop lag (measured by
sfu/loop_load.py), errors, webhooks.

The forwarding core's figures come from sfu.metrics.SfuCollector; these
are the ones only the server around it knows.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Callable

from prometheus_client import CollectorRegistry, Counter as PromCounter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class ServerMetrics:
    """Metrics owned by the signaling server, registered on ``registry``."""

    def __init__(
        self, registry: CollectorRegistry, webhook_stats: Callable[[], Counter], loop_lag: Callable[[], float],
    ) -> None:
        """``loop_lag``: the latest event loop lag (sfu/loop_load.py measures it)."""
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
        registry.register(_LoopAndWebhooks(loop_lag, webhook_stats))


def _live_tasks() -> int:
    try:
        return sum(1 for task in asyncio.all_tasks() if not task.done())
    except RuntimeError:  # collected outside the event loop's thread
        return 0


class _LoopAndWebhooks(Collector):
    def __init__(self, loop_lag: Callable[[], float], webhook_stats: Callable[[], Counter]) -> None:
        self._loop_lag = loop_lag
        self._webhook_stats = webhook_stats

    def collect(self):
        yield GaugeMetricFamily(
            "pysfu_event_loop_lag_seconds", "how late the event loop ran a 100 ms timer, last sample",
            value=self._loop_lag(),
        )
        yield GaugeMetricFamily(
            "pysfu_asyncio_tasks", "asyncio tasks not yet done (a leak grows it)", value=_live_tasks(),
        )
        family = CounterMetricFamily("pysfu_webhooks", "webhook deliveries by outcome", labels=["outcome"])
        stats = self._webhook_stats()
        for outcome in ("delivered", "retries", "failed", "dropped"):
            family.add_metric([outcome], stats.get(outcome, 0))
        yield family
