"""How loaded the event loop is, measured from inside it: busy and lag.

Every PROBE seconds a timer callback notes how late it ran: the *lag*, how
long a callback that became ready waited behind the others. Media that
waited in the shared UDP socket (single-port mode: the reader knows when
each datagram arrived, sfu/udp_mux.py) is lag too, the one that matters:
a loop that reads 256 datagrams a turn can run its timers on time while
its socket holds a quarter of a second of media. Every SAMPLE
seconds it also reads the CPU time of the loop's thread: CPU seconds over
wall seconds is the *busy* fraction, the share of the time the loop spent
working (its syscalls' kernel time included; a loop near 1.0 cannot take
more). Both are smoothed before the load manager acts on them
(sfu/load_manager.py), so one garbage collection is not an overload.

The clocks are injected: tests feed it any load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Optional

from .metrics import Histogram

log = logging.getLogger(__name__)

PROBE = 0.1  # seconds between two lag probes
SAMPLE = 0.5  # seconds between two busy/lag samples
SMOOTHING = 0.3  # weight of the newest sample in the moving averages
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: Gets the smoothed busy fraction, the smoothed lag (seconds) and the time.
OnSample = Callable[[float, float, float], None]


def smooth(average: float, value: float) -> float:
    return (1 - SMOOTHING) * average + SMOOTHING * value


class LoopLoad:
    def __init__(
        self,
        cpu_clock: Callable[[], float] = time.thread_time,
        clock: Callable[[], float] = time.monotonic,
        probe: float = PROBE,
        sample: float = SAMPLE,
        socket_wait: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """``cpu_clock``: CPU seconds of the loop's thread; ``clock``: wall
        seconds; ``socket_wait``: the longest a datagram read since the last
        call waited in its socket, in seconds."""
        self.cpu_clock = cpu_clock
        self.clock = clock
        self.socket_wait = socket_wait
        self._probe_every = probe
        self._sample_every = sample
        self.busy = 0.0  # smoothed busy fraction
        self.lag = 0.0  # smoothed lag: the worst probe of each sample
        self.last_lag = 0.0  # the latest probe's
        self.lag_histogram = Histogram(LAG_BUCKETS)  # every probe's
        self._window_lag = 0.0
        self._last: Optional[tuple[float, float]] = None  # (cpu, wall) of the last sample
        self._handle: Optional[asyncio.TimerHandle] = None
        self._next_sample = 0.0

    # --- the figures (pure: readings passed in) ---------------------------------

    def probe(self, lateness: float) -> None:
        """A probe ran ``lateness`` seconds after it was due."""
        self.last_lag = max(0.0, lateness)
        self.lag_histogram.observe(self.last_lag)
        self._window_lag = max(self._window_lag, self.last_lag)

    def sample(self, cpu: float, wall: float) -> tuple[float, float]:
        """Close a sample at these clock readings; the smoothed busy fraction and lag."""
        if self._last is not None and wall > self._last[1]:
            busy = (cpu - self._last[0]) / (wall - self._last[1])
            self.busy = smooth(self.busy, min(1.0, max(0.0, busy)))
            self.lag = smooth(self.lag, self._window_lag)
        self._last = (cpu, wall)
        self._window_lag = 0.0
        return self.busy, self.lag

    # --- on the running loop ---------------------------------------------------

    def start(self, on_sample: OnSample) -> None:
        """Probe the running loop (a timer, no task) until stop()."""
        self.stop()
        self.sample(self.cpu_clock(), self.clock())
        self._next_sample = time.monotonic() + self._sample_every
        self._schedule(on_sample)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, on_sample: OnSample) -> None:
        due = time.monotonic() + self._probe_every
        self._handle = asyncio.get_running_loop().call_later(self._probe_every, self._tick, due, on_sample)

    def _tick(self, due: float, on_sample: OnSample) -> None:
        now = time.monotonic()
        self.probe(now - due)
        if now >= self._next_sample:
            self._next_sample = now + self._sample_every
            self._window_lag = max(self._window_lag, self.socket_wait())
            busy, lag = self.sample(self.cpu_clock(), self.clock())
            try:
                on_sample(busy, lag, self.clock())
            except Exception:
                log.exception("load sample handling failed")
        self._schedule(on_sample)
