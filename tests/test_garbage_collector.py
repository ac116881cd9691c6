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

from sfu.garbage_collector import GarbageCollector

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
            collector = GarbageCollector(interval=3600)
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


def test_what_existed_at_start_is_frozen_and_a_collection_frees_new_cycles():
    result = run("""
        async def main():
            collector = GarbageCollector(interval=3600)
            collector.start()
            frozen = gc.get_freeze_count()
            left, kept = cycle(), cycle()
            gc.collect(1)  # a young collection promotes both to the oldest generation
            garbage = weakref.ref(left)
            del left  # its participant leaves: garbage, in reference cycles
            gc.collect(1)  # young collections do not reach it
            before = garbage() is None
            pause = collector.collect()
            samples = {s.name: s.value for f in GarbageCollectorMetrics(collector).collect() for s in f.samples}
            print(json.dumps({"frozen": frozen, "before": before, "after": garbage() is None,
                              "kept": kept.other.other is kept, "pause": pause,
                              "count": samples["pysfu_gc_full_collections_total"],
                              "pauses": samples["pysfu_gc_pause_seconds_count"],
                              "frozen_metric": samples["pysfu_gc_frozen_objects"]}))
            collector.stop()
        asyncio.run(main())
    """)
    assert result["frozen"] > 1000, "what existed at start (modules, classes) was not frozen"
    assert result["frozen_metric"] == result["frozen"]
    assert not result["before"], "a promoted cycle was freed without a full collection"
    assert result["after"], "the full collection did not free the cycle"
    assert result["kept"]
    assert result["count"] == 1 and result["pauses"] == 1 and result["pause"] > 0


# (participants held, seconds since start) at each check -> why a full collection is due
@pytest.mark.parametrize("script, expected", [
    pytest.param([(0, 10), (0, 100)], [None, None], id="never held anyone: nothing to free"),
    pytest.param([(20, 10), (0, 15), (0, 20)], [None, "the process is empty", None],
                 id="once each time the process empties"),
    pytest.param([(100, 40), (96, 50), (90, 60), (90, 70)], [None, None, "10 participants left", None],
                 id="a tenth of the most held has left"),
    pytest.param([(100, 40), (80, 50), (75, 60), (70, 90)], [None, "20 participants left", None, "10 participants left"],
                 id="departures: counted from the last collection"),
    pytest.param([(100, 5), (80, 20), (80, 35)], [None, None, "20 participants left"],
                 id="departures wait MIN_GAP after the last collection"),
    pytest.param([(20, 40), (16, 100)], [None, None], id="fewer than DEPARTED_MIN: they wait"),
    pytest.param([(20, 40), (20, 599), (20, 601)], [None, None, "interval"], id="at the latest every interval"),
])
def test_when_a_full_collection_is_due(script, expected):
    state = {"held": 0, "now": 0.0}
    collector = GarbageCollector(interval=600, participants=lambda: state["held"], clock=lambda: state["now"])
    reasons = []
    for state["held"], state["now"] in script:
        reason = collector.due(state["held"], state["now"])
        if reason is not None:
            collector.collect(reason)  # a real one, of this test process's heap
        reasons.append(reason)
    assert reasons == expected


@pytest.fixture
def server_with_a_short_gc_interval(monkeypatch):
    monkeypatch.setenv("PYSFU_GC_INTERVAL", "1")
    server = start_server_process()
    yield server
    stop_server_process(server)


async def test_a_serving_process_makes_its_own_collections(server_with_a_short_gc_interval):
    server = server_with_a_short_gc_interval
    metrics = await eventually_async(
        lambda: scrape(server.http), lambda m: m.get("pysfu_gc_full_collections_total", 0) >= 1, timeout=20)
    assert metrics["pysfu_gc_frozen_objects"] > 1000
    assert metrics["pysfu_gc_pause_seconds_count"] >= 1
