"""Keyframe requests toward a publisher: aggregated, throttled, retried.

Many subscribers asking at once (PLI/FIR, a new down-track, a layer switch)
become one PLI per ``interval``; a request that arrives inside the interval
is sent when it ends, so none is lost and none is duplicated.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Optional


class KeyframeRequester:
    def __init__(self, send_pli: Callable[[], None], interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic, call_later=None) -> None:
        self._send_pli = send_pli
        self._interval = interval
        self._clock = clock
        self._call_later = call_later  # None: the running loop's (tests pass a clock of their own)
        self._last_sent = -1e9
        self._pending: Optional[asyncio.TimerHandle] = None
        self.sent = 0
        self.requested = 0

    def request(self) -> None:
        self.requested += 1
        if self._pending is not None:
            return
        wait = self._last_sent + self._interval - self._clock()
        if wait <= 0:
            self._send()
        else:
            call_later = self._call_later or asyncio.get_running_loop().call_later
            self._pending = call_later(wait, self._send)

    def _send(self) -> None:
        self._pending = None
        self._last_sent = self._clock()
        self.sent += 1
        self._send_pli()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
