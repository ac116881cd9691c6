"""A short soak (benchmarks/soak.py): join/publish/leave cycles of real aiortc
clients against a server process give back every fd and task they took.
The full run (1,000 cycles, RSS too) is in benchmarks/RESULTS.md."""

from __future__ import annotations

import pytest

from benchmarks.soak import Bounds, soak, table

pytestmark = pytest.mark.slow  # join/leave cycles


async def test_cycles_give_back_fds_and_tasks():
    result = await soak(cycles=24, warmup=6, concurrency=4, bounds=Bounds())
    print(table(result))
    assert result["failures"] == 0, table(result)
    assert result["end"]["participants"] == 1, table(result)  # only the watcher is left
    assert result["within"]["fds"] and result["within"]["tasks"], table(result)
