"""The serving process's garbage collection (sfu/garbage_collector.py).

Python's collector is global to a process, so each case runs in a fresh
interpreter of its own; the last one asks a real ``pysfu serve`` process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT, start_server_process, stop_server_process
from .prometheus import scrape
from .waiting import eventually_async

PRELUDE = """
import asyncio, gc, json, sys, weakref
from sfu.garbage_collector import GarbageCollector, GarbageCollectorMetrics

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a

full_starts = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full_starts.append(1))
"""


def run(body: str) -> dict:
    """Run ``body`` (which prints one JSON line) in a fresh interpreter."""
    code = PRELUDE + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_python_starts_no_full_collection_while_the_collector_is_managed():
    result = run("""
        async def main():
            collector = GarbageCollector(interval=3600, full_interval=3600)
            collector.start()
            full_starts.clear()
            kept = [[i] for i in range(300_000)]  # long-lived: Python would walk the heap for them
            managed = len(full_starts)
            collector.stop()
            more = [[i] for i in range(300_000)]
            print(json.dumps({"managed": managed, "after_stop": len(full_starts)}))
        asyncio.run(main())
    """)
    assert result["managed"] == 0, "a full collection ran while the collector was managed"
    assert result["after_stop"] > 0, "stop() did not give full collections back to Python"


def test_new_cycles_are_freed_on_the_interval_and_survivors_frozen():
    result = run("""
        async def main():
            collector = GarbageCollector(interval=0.05, full_interval=3600)
            collector.start()
            frozen_at_start = gc.get_freeze_count()
            garbage = weakref.ref(cycle())
            kept = cycle()
            for _ in range(100):  # at most 5 s
                if garbage() is None and collector.collections["young"]:
                    break
                await asyncio.sleep(0.05)
            print(json.dumps({"freed": garbage() is None, "young": collector.collections["young"],
                              "full": collector.collections["full"], "frozen_at_start": frozen_at_start,
                              "frozen": gc.get_freeze_count()}))
            collector.stop()
        asyncio.run(main())
    """)
    assert result["freed"], "a new reference cycle outlived the collection of what is new"
    assert result["young"] >= 1 and result["full"] == 0
    assert result["frozen_at_start"] > 1000, "what existed at start (modules, classes) was not frozen"
    assert result["frozen"] > result["frozen_at_start"], "the survivors were not frozen"


def test_cycles_that_die_frozen_wait_for_the_full_collection():
    result = run("""
        async def main():
            collector = GarbageCollector(interval=3600, full_interval=3600)
            collector.start()
            left = cycle()  # a participant's objects, frozen while it is in the room
            collector.collect_young()
            gone = weakref.ref(left)
            del left  # it leaves: its cycle is garbage, but frozen
            collector.collect_young()
            after_young = gone() is None
            collector.collect_full()
            after_full = gone() is None
            families = {f.name: f for f in GarbageCollectorMetrics(collector).collect()}
            counts = {s.labels["kind"]: s.value for s in families["pysfu_gc_collections"].samples
                      if s.name.endswith("_total")}
            pauses = [s.value for s in families["pysfu_gc_full_pause_seconds"].samples
                      if s.name.endswith("_count")]
            print(json.dumps({"after_young": after_young, "after_full": after_full, "counts": counts,
                              "full_pauses": pauses}))
            collector.stop()
        asyncio.run(main())
    """)
    assert not result["after_young"], "a frozen object was collected before the full collection"
    assert result["after_full"], "the full collection did not free the cycle that died frozen"
    assert result["counts"] == {"young": 2, "full": 1}
    assert result["full_pauses"] == [1]


def test_the_heap_is_collected_once_each_time_the_process_empties():
    result = run("""
        async def main():
            state = {"idle": False}
            collector = GarbageCollector(interval=0.02, full_interval=3600, idle=lambda: state["idle"])
            collector.start()
            async def ticks(n):
                start = collector.collections["young"] + collector.collections["full"]
                for _ in range(500):  # at most 10 s
                    if collector.collections["young"] + collector.collections["full"] >= start + n:
                        return
                    await asyncio.sleep(0.02)
            await ticks(3)
            busy = dict(collector.collections)
            state["idle"] = True
            await ticks(5)
            first_idle = dict(collector.collections)
            state["idle"] = False
            await ticks(3)
            state["idle"] = True
            await ticks(3)
            print(json.dumps({"busy": busy, "first_idle": first_idle, "again": collector.collections}))
            collector.stop()
        asyncio.run(main())
    """)
    assert result["busy"]["full"] == 0
    assert result["first_idle"]["full"] == 1, "one full collection when the process empties, not one per tick"
    assert result["again"]["full"] == 2, "emptied again: one more"


@pytest.fixture
def server_with_short_gc_intervals(monkeypatch):
    monkeypatch.setenv("PYSFU_GC_INTERVAL", "0.2")
    monkeypatch.setenv("PYSFU_GC_FULL_INTERVAL", "0.5")
    server = start_server_process()
    yield server
    stop_server_process(server)


async def test_a_serving_process_makes_its_own_collections(server_with_short_gc_intervals):
    server = server_with_short_gc_intervals
    metrics = await eventually_async(
        lambda: scrape(server.http),
        lambda m: m.get('pysfu_gc_collections_total{kind="full"}', 0) >= 1
        and m.get('pysfu_gc_collections_total{kind="young"}', 0) >= 1,
        timeout=20)
    assert metrics["pysfu_gc_frozen_objects"] > 1000
    assert metrics["pysfu_gc_full_pause_seconds_count"] >= 1
