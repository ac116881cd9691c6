"""Room-wide updates paced over loop turns (sfu/paced_updates.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from sfu.paced_updates import PacedUpdates

from .waiting import eventually


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_each_loop_turn_updates_for_its_budget_and_then_lets_others_run():
    done: list[int] = []
    turns: list[int] = []  # how many updates were done when another callback got the loop

    def update(context, item: int) -> None:
        busy(0.001)
        done.append(item)

    updates = PacedUpdates(lambda: None, update, budget=0.004)
    updates.add(range(40))
    for _ in range(3):
        await asyncio.sleep(0)
        turns.append(len(done))
    await eventually(lambda: len(done) == 40)
    assert done == list(range(40))
    assert 0 < turns[0] < 10 and turns[0] < turns[1] < turns[2] < 40  # a slice per turn


async def test_a_queued_item_is_updated_once_with_the_state_of_its_turn():
    state = {"speakers": ["a"]}
    seen: list[tuple[str, list[str]]] = []
    updates = PacedUpdates(lambda: list(state["speakers"]), lambda context, item: seen.append((item, context)))
    updates.add(["x", "y"])
    updates.add(["y", "z"])  # queued again before its turn: once
    state["speakers"] = ["b"]  # a later change overtakes the earlier one
    updates.discard("z")  # left the room meanwhile
    await eventually(lambda: len(updates) == 0)
    await asyncio.sleep(0.01)
    assert seen == [("x", ["b"]), ("y", ["b"])]


async def test_a_failing_update_does_not_stop_the_others():
    done: list[int] = []

    def update(context, item: int) -> None:
        if item == 2:
            raise RuntimeError("broken subscriber")
        done.append(item)

    updates = PacedUpdates(lambda: None, update)
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda loop, context: errors.append(context))
    try:
        updates.add(range(5))
        await eventually(lambda: done == [0, 1, 3, 4])
    finally:
        loop.set_exception_handler(None)
    assert [type(e.get("exception")) for e in errors] == [RuntimeError]


async def test_closed_it_updates_nothing_more():
    done: list[int] = []
    updates = PacedUpdates(lambda: None, lambda context, item: done.append(item))
    updates.add(range(5))
    updates.close()
    await asyncio.sleep(0.02)
    assert done == [] and len(updates) == 0


@pytest.mark.parametrize("budget", [0.0, 1.0])
async def test_every_item_is_updated_whatever_the_budget(budget):
    done: list[int] = []
    updates = PacedUpdates(lambda: None, lambda context, item: done.append(item), budget=budget)
    updates.add(range(10))
    await eventually(lambda: done == list(range(10)))
