"""Where the benchmarks' processes run: ``--pin`` puts the server under test
alone on the first CPU this process may use (CPU 0), and everything else
(peers, generator workers, the benchmark itself, the profiler) on the
others (CPU 1 on a 2-core machine), for pysfu and Janus alike.

Affinity is set in the child between fork and exec, so every thread the
server starts later (Janus's loops, pysfu's worker processes) inherits it;
``affinity()`` reads it back from every thread for the report.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Callable, Iterable, Optional

CpuSet = Optional[set[int]]
#: The CPUs the benchmark was started on (read once: pin_self narrows them later).
ALLOWED = sorted(os.sched_getaffinity(0))


def cpu_sets(pin: bool) -> tuple[CpuSet, CpuSet]:
    """(server CPUs, everything else's CPUs); (None, None) without --pin or
    on a single CPU."""
    cpus = ALLOWED
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if this process dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def child_setup(cpus: CpuSet, batch: bool = False) -> Callable[[], None]:
    """preexec_fn: die with the parent, run on ``cpus`` when given, and with
    ``batch`` under SCHED_BATCH (a woken batch task does not preempt the one
    running: the server is not switched out each time it sends to a peer)."""
    def setup() -> None:
        die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)
        if batch:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    return setup


def pin_self(cpus: CpuSet) -> None:
    """Move every thread of this process (and the threads it starts later) to ``cpus``."""
    if not cpus:
        return
    for tid in _threads(os.getpid()):
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def pin_benchmark() -> str:
    """--pin for the benchmark process itself: off the server's CPU. A line
    saying where everything runs."""
    server, others = cpu_sets(True)
    if server is None:
        return "--pin: only one CPU here, nothing pinned"
    pin_self(others)
    return (f"pinned: the server on CPU {describe(server)}; everything else (peers, generator, "
            f"profiler, this process) on CPU {describe(others)}")


def affinity(pids: Iterable[int]) -> str:
    """The CPUs every thread of ``pids`` may run on, as taskset prints them
    ("0", "1", "0-1"); distinct sets joined by " | " when threads differ."""
    found = []
    for pid in pids:
        for tid in _threads(pid):
            try:
                cpus = describe(os.sched_getaffinity(tid))
            except OSError:
                continue
            if cpus not in found:
                found.append(cpus)
    return " | ".join(found) or "?"


def describe(cpus: Optional[Iterable[int]]) -> str:
    """A CPU set as a list of ranges: {0, 1, 2, 5} -> "0-2,5"; None -> "any"."""
    if cpus is None:
        return "any"
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _threads(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []
