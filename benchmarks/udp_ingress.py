"""What the single-port mux (sfu/udp_mux.py) spends per datagram it receives.

In-process: one ``UdpMux`` on loopback, every sender address routed to an
endpoint that only counts. Two figures per run:

- **live**: a sender process (forked) sends SRTP-sized datagrams round-robin
  from many source ports, as a room's publishers do, at ``--rate`` datagrams
  per second (0: flat out). The figure is the receiving process's CPU time
  (user + system, ``getrusage``) per datagram the mux handed to an endpoint,
  over a window after a warm-up; the sender's CPU is not in it. ``--work``
  makes each datagram cost that many µs more in the endpoint (a calibrated
  spin standing in for unprotect and fan-out, included in the figure), so
  the loop is as busy as a server's and each read finds more waiting.
  ``--busy`` adds a callback spinning that many µs on every loop turn (the
  rest of a busy server's turn: timers, RTCP, signaling, other sockets): what
  the reader takes per turn then bounds the ingress, and the excess is lost
  in the socket buffer (``loss`` against ``--rate``).
- **drain**: the socket filled with 256 datagrams, then one reader turn
  timed alone (``time.thread_time``): the read path's own cost per datagram,
  without wake-ups.

``--compare-ref REV`` runs the same measurements on a snapshot of REV,
interleaved with the working tree, each run in a fresh process.

    .venv/bin/python -m benchmarks.udp_ingress --rate 50000 --repeat 3 --compare-ref 3cbb5dd
    .venv/bin/python -m benchmarks.udp_ingress --rate 20000 --video --repeat 5 --compare-ref 8cfda4f
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
SRTP_SIZE = 1100  # a video packet with its SRTP tag
PAYLOAD_TYPE = 96  # VP8, as Chromium offers it
DRAIN_DATAGRAMS = 256


class Counter:
    """An endpoint's receiver: counts, and spins ``rounds`` loop rounds per
    datagram to stand in for a connection's work."""

    def __init__(self, rounds: int = 0) -> None:
        self.count = 0
        self.rounds = range(rounds)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.count += 1
        for _ in self.rounds:
            pass


def rounds_for(work_us: float) -> int:
    """Spin rounds that take about ``work_us`` of CPU."""
    if not work_us:
        return 0
    rounds, repeats = 1000, 2000
    counter = Counter(rounds)
    start = time.thread_time()
    for _ in range(repeats):
        counter.datagram_received(b"", ())
    per_round = (time.thread_time() - start) / repeats / rounds
    return max(1, round(work_us / 1e6 / per_round))


def blast(sockets: list[socket.socket], target: tuple, size: int, rate: int) -> None:
    """Send until killed, round-robin over ``sockets``: ``rate`` datagrams
    per second in 1 ms ticks, or flat out (0)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    payload = bytes([0x80, PAYLOAD_TYPE]) + bytes(size - 2)
    per_tick = max(1, rate // 1000) if rate else len(sockets)
    next_tick = time.monotonic()
    index = 0
    while True:
        for _ in range(per_tick):
            try:
                sockets[index].sendto(payload, target)
            except OSError:
                pass
            index = (index + 1) % len(sockets)
        if rate:
            next_tick += 0.001
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)


async def measure(args: argparse.Namespace) -> dict:
    from sfu import udp_mux

    mux = udp_mux.UdpMux.bind("127.0.0.1", 0)
    counter = Counter()
    senders = []
    for index in range(args.sources):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        senders.append(sock)
        endpoint = mux.endpoint(f"source{index:04d}", counter)
        endpoint.confirm(sock.getsockname())
        if args.video and hasattr(udp_mux, "video_types"):  # older code: no video backlog
            endpoint.video_types = udp_mux.video_types([PAYLOAD_TYPE])
    try:
        drain_us = drain_cost(mux, counter, senders, args.size)
        counter.rounds = range(args.rounds)
        live = await live_cost(mux, counter, senders, args)
    finally:
        for sock in senders:
            sock.close()
        mux.close()
    return {**live, "drain_us": drain_us}


def drain_cost(mux, counter: Counter, senders: list[socket.socket], size: int, turns: int = 300) -> float:
    """µs of thread CPU per datagram of a reader turn on a filled socket."""
    payload = bytes([0x80, PAYLOAD_TYPE]) + bytes(size - 2)
    spent = received = 0
    for _ in range(turns):
        for index in range(DRAIN_DATAGRAMS):
            senders[index % len(senders)].sendto(payload, mux.sockname)
        before = counter.count
        start = time.thread_time_ns()
        for _ in range(DRAIN_DATAGRAMS // 64):  # the recvfrom reader took 64 a turn
            if counter.count - before < DRAIN_DATAGRAMS:
                mux._readable()
        spent += time.thread_time_ns() - start
        received += counter.count - before
    return spent / received / 1000


async def live_cost(mux, counter: Counter, senders: list[socket.socket], args: argparse.Namespace) -> dict:
    process = multiprocessing.get_context("fork").Process(
        target=blast, args=(senders, mux.sockname, args.size, args.rate), daemon=True)
    process.start()
    busy = _busy_every_turn(args.busy_rounds) if args.busy_rounds else None
    try:
        await asyncio.sleep(args.warmup)
        start = _snapshot(counter, mux)
        await asyncio.sleep(args.seconds)
        end = _snapshot(counter, mux)
    finally:
        process.terminate()
        process.join()
        if busy is not None:
            busy.cancel()
    received = end["received"] - start["received"]
    wall = end["wall"] - start["wall"]
    reads = end["reads"] - start["reads"]
    return {
        "received_per_s": received / wall,
        "live_us": (end["cpu"] - start["cpu"]) / received * 1e6,
        "cpu_percent": (end["cpu"] - start["cpu"]) / wall * 100,
        "per_read": received / reads if reads else None,
        "loss_percent": max(0.0, 100 * (1 - received / wall / args.rate)) if args.rate else None,
    }


def _busy_every_turn(rounds: int) -> asyncio.Handle:
    """A callback that spins ``rounds`` loop rounds and schedules itself again: once a loop turn."""
    loop = asyncio.get_running_loop()
    spin = range(rounds)
    handle: list[asyncio.Handle] = []

    def turn() -> None:
        for _ in spin:
            pass
        handle[0] = loop.call_soon(turn)

    handle.append(loop.call_soon(turn))

    class Stop:
        def cancel(self) -> None:
            handle[0].cancel()

    return Stop()


def _snapshot(counter: Counter, mux) -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    inbox = getattr(mux, "inbox", None)  # recvmmsg calls (the recvfrom reader had none)
    return {"received": counter.count, "wall": time.monotonic(), "cpu": usage.ru_utime + usage.ru_stime,
            "reads": inbox.calls if inbox is not None else 0}


def run_in_process(args: argparse.Namespace) -> None:
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(measure(args))
    else:
        result = asyncio.run(measure(args))
    print(json.dumps(result))


def run_fresh(source: Path, args: argparse.Namespace) -> dict:
    """One measurement in a new process running the code in ``source``."""
    argv = [sys.executable, "-m", "benchmarks.udp_ingress", "--one-run", "--loop", args.loop,
            "--sources", str(args.sources), "--size", str(args.size), "--rate", str(args.rate),
            "--rounds", str(args.rounds), "--busy-rounds", str(args.busy_rounds), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    if args.video and "--video" in (source / "benchmarks" / "udp_ingress.py").read_text():
        argv.append("--video")  # an older snapshot's copy has no --video: its mux has no backlog
    env = {**os.environ, "PYTHONPATH": str(source)}
    output = subprocess.run(argv, cwd=source, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=100, help="sender source ports (publishers)")
    parser.add_argument("--size", type=int, default=SRTP_SIZE, help="datagram bytes")
    parser.add_argument("--rate", type=int, default=0, help="datagrams per second in all (0: flat out)")
    parser.add_argument("--work", type=float, default=0.0,
                        help="µs of CPU an endpoint spends per datagram, standing in for a connection's work")
    parser.add_argument("--busy", type=float, default=0.0,
                        help="µs of CPU another callback spends on every loop turn (the rest of a busy server)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--compare-ref", metavar="REV", help="also run a snapshot of REV, interleaved")
    parser.add_argument("--video", action="store_true",
                        help="the datagrams are video of a publisher's negotiated type: they pass "
                        "through the video backlog (sfu/video_backlog.py), as a server's camera packets do")
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=0, help=argparse.SUPPRESS)  # --work, calibrated once
    parser.add_argument("--busy-rounds", type=int, default=0, help=argparse.SUPPRESS)  # --busy, likewise
    args = parser.parse_args()
    if args.one_run:
        run_in_process(args)
        return
    args.rounds, args.busy_rounds = rounds_for(args.work), rounds_for(args.busy)  # the same spin for every run
    codes: dict[str, Path] = {"working tree": ROOT}
    if args.compare_ref:
        from .forwarding import snapshot

        codes[args.compare_ref] = snapshot(args.compare_ref)
    results: dict[str, list[dict]] = {label: [] for label in codes}
    for _ in range(args.repeat):
        for label, source in codes.items():
            result = run_fresh(source, args)
            results[label].append(result)
            print(f"{label}: live {result['live_us']:.2f} µs per datagram, "
                  f"{result['received_per_s']:,.0f}/s, {result['cpu_percent']:.0f} % of a core"
                  f"{_per_read(result['per_read'])}{_loss(result['loss_percent'])}; "
                  f"drain {result['drain_us']:.2f} µs", flush=True)
    print(f"\n{args.loop}, {args.sources} sources, {args.size} B, rate {args.rate or 'flat out'}, "
          f"work {args.work} µs, busy {args.busy} µs a turn; medians of {args.repeat}:")
    for label, runs in results.items():
        loss = [r["loss_percent"] for r in runs if r["loss_percent"] is not None]
        print(f"  {label}: live {statistics.median(r['live_us'] for r in runs):.2f} µs per datagram "
              f"({statistics.median(r['received_per_s'] for r in runs):,.0f}/s"
              f"{_loss(statistics.median(loss)) if loss else ''}), "
              f"drain {statistics.median(r['drain_us'] for r in runs):.2f} µs")


def _per_read(value: Optional[float]) -> str:
    return f", {value:.1f} per recvmmsg" if value else ""


def _loss(value: Optional[float]) -> str:
    return f", loss {value:.1f} %" if value is not None else ""


if __name__ == "__main__":
    main()
