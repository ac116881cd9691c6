"""sfu.keyframes.KeyframeRequester: one PLI per interval, none lost, none duplicated.

Times in the tables are in units of the interval, on a clock of the test's
own: no sleeps, so a loaded machine cannot move a send across a checkpoint.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from sfu.keyframes import KeyframeRequester

P = pytest.param
INTERVAL = 0.05


class FakeTime:
    """A clock and call_later that run only when the test advances them."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback) -> "Timer":
        timer = Timer(callback)
        heapq.heappush(self._timers, (self.now + delay, next(self._order), timer))
        return timer

    def advance_to(self, at: float) -> None:
        while self._timers and self._timers[0][0] <= at:
            when, _, timer = heapq.heappop(self._timers)
            self.now = when
            if not timer.cancelled:
                timer.callback()
        self.now = max(self.now, at)


class Timer:
    def __init__(self, callback) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def requester_on(clock: FakeTime, sent: list) -> KeyframeRequester:
    return KeyframeRequester(lambda: sent.append(clock.now), INTERVAL, clock=clock, call_later=clock.call_later)


def drive(requests: list[float], checkpoints: list[tuple[float, int]]) -> list[float]:
    """Issue requests at the given times, asserting the PLI count at each checkpoint."""
    clock, sent_at = FakeTime(), []
    requester = requester_on(clock, sent_at)
    # at equal times a request happens before the checkpoint that observes it
    events = sorted([(t, 0, None) for t in requests] + [(t, 1, n) for t, n in checkpoints])
    for at, kind, count in events:
        clock.advance_to(at * INTERVAL)
        if kind == 0:
            requester.request()
        else:
            assert requester.sent == count == len(sent_at), f"at {at} intervals: sent {sent_at}"
    requester.close()
    assert requester.requested == len(requests)
    return sent_at


@pytest.mark.parametrize(
    "requests, checkpoints",
    [
        P([0], [(0, 1), (2.5, 1)], id="first-request-sent-at-once-no-trailing"),
        P([0, 0, 0, 0.2, 0.5], [(0, 1), (0.5, 1), (1.5, 2), (3, 2)], id="burst-coalesces-into-one-trailing"),
        P([0, 0.5], [(0.5, 1), (1.5, 2), (3, 2)], id="one-request-inside-interval-sent-at-its-end"),
        P([0, 1.5, 3], [(0, 1), (1.5, 2), (3, 3), (4.5, 3)], id="spaced-requests-each-sent-at-once"),
        P([0, 0.5, 1.5], [(0.5, 1), (1.5, 2), (2.5, 3), (4, 3)], id="request-soon-after-trailing-waits-again"),
        P([0, 0.5, 2.5], [(0.5, 1), (1.5, 2), (2.5, 3), (4, 3)], id="request-after-quiet-interval-sent-at-once"),
    ],
)
def test_schedule(requests, checkpoints):
    drive(requests, checkpoints)


def test_sends_are_at_least_one_interval_apart():
    sent_at = drive([0, 0.1, 0.6, 0.9, 1.1, 1.2, 1.9, 2.05], [(3.5, 4)])
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:])]
    assert all(gap >= INTERVAL - 1e-9 for gap in gaps), sent_at


async def test_close_cancels_the_trailing_request():
    sent = []
    requester = KeyframeRequester(lambda: sent.append(1), INTERVAL)
    requester.request()
    requester.request()
    requester.close()
    await asyncio.sleep(INTERVAL * 2)
    assert sent == [1]
    assert requester.sent == 1 and requester.requested == 2


async def test_request_after_close_still_works():
    sent = []
    requester = KeyframeRequester(lambda: sent.append(1), INTERVAL)
    requester.request()
    requester.request()
    requester.close()
    await asyncio.sleep(INTERVAL * 1.5)
    requester.request()
    assert sent == [1, 1]
    requester.close()
