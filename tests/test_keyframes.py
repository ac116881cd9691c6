"""sfu.keyframes.KeyframeRequester: one PLI per interval, none lost, none duplicated.

Times in the tables are in units of the interval. Checkpoints sit at least
0.4 interval away from any send so scheduler jitter cannot flip them.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from sfu.keyframes import KeyframeRequester

P = pytest.param
INTERVAL = 0.05


async def drive(requests: list[float], checkpoints: list[tuple[float, int]]):
    """Issue requests at the given times, asserting the PLI count at each checkpoint."""
    sent_at: list[float] = []
    start = time.monotonic()
    requester = KeyframeRequester(lambda: sent_at.append(time.monotonic() - start), INTERVAL)
    # at equal times a request happens before the checkpoint that observes it
    events = sorted([(t, 0, None) for t in requests] + [(t, 1, n) for t, n in checkpoints])
    try:
        for at, kind, count in events:
            delay = start + at * INTERVAL - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if kind == 0:
                requester.request()
            else:
                assert requester.sent == count == len(sent_at), f"at {at} intervals: sent {sent_at}"
    finally:
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
async def test_schedule(requests, checkpoints):
    await drive(requests, checkpoints)


async def test_sends_are_at_least_one_interval_apart():
    sent_at = await drive([0, 0.1, 0.6, 0.9, 1.1, 1.2, 1.9, 2.05], [(3.5, 4)])
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:])]
    assert all(gap >= INTERVAL - 0.002 for gap in gaps), sent_at


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
