"""Soak: many join/publish/leave cycles against one server process, and
whether the server gives back what each cycle took.

A watcher stays in the room (it subscribes to everyone, so m-lines are
recycled); ``--concurrency`` cyclers at a time join with the Python client
(real aiortc peers), publish audio and a small video, wait until the watcher
receives them, and leave. The server's open fds (/proc/PID/fd), its asyncio
tasks (``pysfu_asyncio_tasks`` on /metrics) and its RSS are sampled after a
warm-up and at the end; the run passes when the end is within the bounds of
the start.

    python -m benchmarks.soak --cycles 1000 --warmup 200 --concurrency 4

The RSS of a fresh server climbs for the first few hundred cycles (allocator
arenas and caches filling, measured to level off: see the curve it prints),
hence the long warm-up before the start sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import VideoFrame

from signaling.client import Client

ROOT = Path(__file__).resolve().parent.parent
ROOM = "soak"
TASKS = re.compile(r"^pysfu_asyncio_tasks (\S+)$", re.M)
PARTICIPANTS = re.compile(r"^pysfu_participants (\S+)$", re.M)


@dataclass
class Bounds:
    fds: int = 5
    tasks: int = 5
    rss_mb: float = 30.0


@dataclass
class Sample:
    fds: int
    tasks: int
    rss_mb: float
    participants: int


class SmallVideoTrack(VideoStreamTrack):
    """A 160x120 picture that changes every frame (cheap to encode)."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._count += 1
        image = np.full((120, 160, 3), self._count % 256, dtype=np.uint8)
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


# --- the server process -------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "signaling", "serve", "--port", str(port), "--ice-address", "127.0.0.1",
               "--workers", "1", "--udp-port", "0", "--log-level", "warning", "--joins-per-minute", "0"]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError("the server did not start")


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def sample(pid: int, port: int) -> Sample:
    fds = len(os.listdir(f"/proc/{pid}/fd"))  # before the scrape: its own connection is not counted
    text = metrics(port)
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))
    tasks, participants = TASKS.search(text), PARTICIPANTS.search(text)
    return Sample(
        fds=fds,
        tasks=int(float(tasks.group(1))) if tasks else -1,
        rss_mb=rss_kb / 1024,
        participants=int(float(participants.group(1))) if participants else -1,
    )


async def settled_sample(pid: int, port: int, participants: int, timeout: float = 30) -> Sample:
    """A sample once only the watcher (``participants``) is left and the fds
    and tasks held still for 3 s (closing sockets and tasks take a moment)."""
    deadline = time.monotonic() + timeout
    previous, steady = None, 0
    while True:
        now = await asyncio.to_thread(sample, pid, port)
        steady = steady + 1 if previous is not None and (now.fds, now.tasks) == (previous.fds, previous.tasks) else 0
        if (now.participants == participants and steady >= 3) or time.monotonic() > deadline:
            return now
        previous = now
        await asyncio.sleep(1.0)


# --- the cycles ---------------------------------------------------------------


async def one_cycle(url: str, watcher: Client, index: int, timeout: float) -> None:
    client = Client(url, ice_addresses=["127.0.0.1"], timeout=timeout)
    try:
        await client.connect()
        await client.join(ROOM, f"cycler-{index}")
        infos = await client.publish([AudioStreamTrack(), SmallVideoTrack()])
        ids = {info["id"] for info in infos}
        deadline = time.monotonic() + timeout
        while not ids <= set(watcher.remote_tracks):  # the watcher gets both
            if time.monotonic() > deadline:
                raise TimeoutError(f"cycle {index}: the watcher never got the tracks")
            await asyncio.sleep(0.05)
        await client.leave()
    finally:
        await client.close()


async def run_cycles(url: str, watcher: Client, first: int, count: int, concurrency: int,
                     timeout: float) -> int:
    """``count`` cycles, ``concurrency`` at a time; returns how many failed."""
    numbers = iter(range(first, first + count))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for index in numbers:
            try:
                await one_cycle(url, watcher, index, timeout)
            except Exception as exc:  # counted and shown: the soak goes on
                failures += 1
                print(f"cycle {index} failed: {exc!r}", file=sys.stderr)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def quiet_teardown_races(counts: dict):
    """aiortc's own connect task fails when a cycler leaves before its
    subscriber PC connected (the soak's clients, not the server): count those."""
    def handler(loop, context) -> None:
        exc = context.get("exception")
        if type(exc).__name__ == "InvalidStateError":
            counts["client_teardown_races"] = counts.get("client_teardown_races", 0) + 1
        else:
            loop.default_exception_handler(context)
    return handler


async def soak(cycles: int, warmup: int, concurrency: int, bounds: Bounds, timeout: float = 20,
               every: int = 100) -> dict:
    noise: dict = {}
    asyncio.get_running_loop().set_exception_handler(quiet_teardown_races(noise))
    port = free_port()
    server = start_server(port)
    url = f"ws://127.0.0.1:{port}/ws"
    watcher = Client(url, ice_addresses=["127.0.0.1"], timeout=timeout)
    try:
        await watcher.connect()
        await watcher.join(ROOM, "watcher")
        started = time.monotonic()
        failures = await run_cycles(url, watcher, 0, warmup, concurrency, timeout)
        start = await settled_sample(server.pid, port, 1)
        curve = []  # (cycles done, RSS MB) along the way: a leak climbs, a warm-up levels off
        for done in range(0, cycles, every):
            chunk = min(every, cycles - done)
            failures += await run_cycles(url, watcher, warmup + done, chunk, concurrency, timeout)
            curve.append((done + chunk, round((await asyncio.to_thread(sample, server.pid, port)).rss_mb, 1)))
        end = await settled_sample(server.pid, port, 1)
        elapsed = time.monotonic() - started
        await watcher.leave()
    finally:
        await watcher.close()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    within = {
        "fds": abs(end.fds - start.fds) <= bounds.fds,
        "tasks": abs(end.tasks - start.tasks) <= bounds.tasks,
        "rss_mb": end.rss_mb - start.rss_mb <= bounds.rss_mb,
    }
    return {
        "cycles": cycles, "warmup": warmup, "concurrency": concurrency, "failures": failures,
        "seconds": round(elapsed, 1), "start": start.__dict__, "end": end.__dict__,
        "bounds": bounds.__dict__, "within": within, "rss_curve": curve,
        "ok": all(within.values()) and failures == 0 and end.participants == 1, **noise,
    }


def table(result: dict) -> str:
    start, end, bounds = result["start"], result["end"], result["bounds"]
    rows = [
        ("open fds", start["fds"], end["fds"], f"± {bounds['fds']}", result["within"]["fds"]),
        ("asyncio tasks", start["tasks"], end["tasks"], f"± {bounds['tasks']}", result["within"]["tasks"]),
        ("RSS (MB)", round(start["rss_mb"], 1), round(end["rss_mb"], 1), f"+≤ {bounds['rss_mb']:g}",
         result["within"]["rss_mb"]),
        ("participants", start["participants"], end["participants"], "= 1 (the watcher)",
         end["participants"] == 1),
    ]
    lines = [f"soak: {result['cycles']} cycles after {result['warmup']} warm-up, {result['concurrency']} "
             f"at a time, {result['seconds']} s, {result['failures']} failed",
             f"{'':14} {'start':>8} {'end':>8}  {'bound':<18} ok"]
    for name, a, b, bound, ok in rows:
        lines.append(f"{name:14} {a:>8} {b:>8}  {bound:<18} {'yes' if ok else 'NO'}")
    lines.append("RSS (MB) after n cycles: " + ", ".join(f"{n}: {mb}" for n, mb in result["rss_curve"]))
    lines.append("PASS" if result["ok"] else "FAIL")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200, help="cycles before the start sample")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(soak(args.cycles, args.warmup, args.concurrency, Bounds()))
    print(json.dumps(result) if args.json else table(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
