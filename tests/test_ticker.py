"""sfu/ticker.py: every job on one timer, at a steady rate, paced, and no timer left once the jobs are gone."""

from __future__ import annotations

import asyncio

from sfu import ticker
from sfu.ticker import Ticker

from .waiting import eventually


async def test_every_job_runs_each_beat_from_one_timer():
    loop = asyncio.get_running_loop()
    beats: dict[str, list[float]] = {"a": [], "b": []}
    t = Ticker(0.02, loop)
    t.add(beats["a"].append)
    t.add(beats["b"].append)
    await eventually(lambda: len(beats["a"]) >= 5, 5, 0.005, "five beats")
    # one timer: the two jobs of a beat ran with the same time
    assert beats["a"][:4] == beats["b"][:4]
    assert beats["a"][:4] == sorted(set(beats["a"][:4])), "a beat ran a job twice"
    t.close()


async def test_a_failing_job_does_not_stop_the_others():
    loop = asyncio.get_running_loop()
    ran = []

    def broken(now: float) -> None:
        raise RuntimeError("boom")

    t = Ticker(0.01, loop)
    t.add(broken)
    t.add(ran.append)
    await eventually(lambda: len(ran) >= 3, 5, 0.005, "the healthy job kept its beats")
    t.close()


async def test_the_timer_stops_with_the_last_job_and_starts_again():
    loop = asyncio.get_running_loop()
    ran = []
    t = Ticker(0.01, loop)
    t.add(ran.append)
    await eventually(lambda: ran, 5, 0.005, "first beat")
    t.discard(ran.append)
    assert t._handle is None and len(t) == 0
    count = len(ran)
    await asyncio.sleep(0.05)
    assert len(ran) == count, "a discarded job ran"
    t.add(ran.append)
    await eventually(lambda: len(ran) > count, 5, 0.005, "beats again after a new job")
    t.close()


async def test_a_job_discarded_before_its_turn_does_not_run():
    loop = asyncio.get_running_loop()
    ran: list[str] = []
    t = Ticker(0.01, loop)

    def first(now: float) -> None:
        ran.append("first")
        t.discard(second)  # the same beat's pass still holds it

    def second(now: float) -> None:
        ran.append("second")

    t.add(first)
    t.add(second)
    await eventually(lambda: ran.count("first") >= 3, 5, 0.005, "three beats")
    assert "second" not in ran
    t.close()


async def test_shared_is_per_loop_and_period():
    a = ticker.shared(0.25)
    assert ticker.shared(0.25) is a
    assert ticker.shared(0.5) is not a
    assert a.loop is asyncio.get_running_loop()
