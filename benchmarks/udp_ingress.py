"""What the single-port mux (sfu/udp_mux.py) spends per datagram it receives.

In-process: one ``UdpMux`` on loopback, every sender address routed to an
endpoint that only counts. A sender process (forked) sends SRTP-sized
datagrams round-robin from many source ports, as a room's publishers do,
flat out or at ``--rate`` datagrams per second. The figure is the receiving
process's CPU time (user and system, ``getrusage``) per datagram the mux
handed to an endpoint, over a window after a warm-up; the sender's CPU is
not in it. Runs alternate between the loops asked for (``--loops``).

    .venv/bin/python -m benchmarks.udp_ingress --sources 100 --rate 50000 --seconds 5 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import signal
import socket
import statistics
import time

from sfu import udp_mux

SRTP_SIZE = 1100  # a video packet with its SRTP tag


class Counter:
    """An endpoint's receiver that only counts (a connection's work is not measured)."""

    def __init__(self) -> None:
        self.count = 0

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.count += 1


def blast(sockets: list[socket.socket], target: tuple, size: int, rate: int) -> None:
    """Send until killed, round-robin over ``sockets``: ``rate`` datagrams
    per second in 1 ms ticks, or flat out (0)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    payload = b"\x80\x60" + bytes(size - 2)
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


async def measure(sources: int, size: int, rate: int, seconds: float, warmup: float) -> dict:
    mux = udp_mux.UdpMux.bind("127.0.0.1", 0)
    counter = Counter()
    senders = []
    for index in range(sources):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        senders.append(sock)
        mux.endpoint(f"source{index:04d}", counter).confirm(sock.getsockname())
    process = multiprocessing.get_context("fork").Process(
        target=blast, args=(senders, mux.sockname, size, rate), daemon=True)
    process.start()
    try:
        await asyncio.sleep(warmup)
        start = _snapshot(counter, mux)
        await asyncio.sleep(seconds)
        end = _snapshot(counter, mux)
    finally:
        process.terminate()
        process.join()
        for sock in senders:
            sock.close()
        mux.close()
    received = end["received"] - start["received"]
    wall = end["wall"] - start["wall"]
    return {
        "received_per_s": received / wall,
        "user_us": (end["user"] - start["user"]) / received * 1e6,
        "system_us": (end["system"] - start["system"]) / received * 1e6,
        "cpu_percent": (end["user"] + end["system"] - start["user"] - start["system"]) / wall * 100,
        "unrouted": end["dropped"] - start["dropped"],
    }


def _snapshot(counter: Counter, mux) -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"received": counter.count, "dropped": mux.dropped, "wall": time.monotonic(),
            "user": usage.ru_utime, "system": usage.ru_stime}


def run_once(loop_name: str, args: argparse.Namespace) -> dict:
    if loop_name == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    return runner(measure(args.sources, args.size, args.rate, args.seconds, args.warmup))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=100, help="sender source ports (publishers)")
    parser.add_argument("--size", type=int, default=SRTP_SIZE, help="datagram bytes")
    parser.add_argument("--rate", type=int, default=0, help="datagrams per second in all (0: flat out)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loops", default="uvloop", help="comma-separated: uvloop, asyncio")
    args = parser.parse_args()
    loops = args.loops.split(",")
    results: dict[str, list[dict]] = {name: [] for name in loops}
    for _ in range(args.repeat):
        for name in loops:
            result = run_once(name, args)
            results[name].append(result)
            print(f"{name}: {result['received_per_s']:,.0f} datagrams/s received, "
                  f"{result['user_us'] + result['system_us']:.2f} µs CPU each "
                  f"(user {result['user_us']:.2f}, system {result['system_us']:.2f}), "
                  f"{result['cpu_percent']:.0f} % of a core", flush=True)
    for name, runs in results.items():
        total = statistics.median(r["user_us"] + r["system_us"] for r in runs)
        user = statistics.median(r["user_us"] for r in runs)
        rate = statistics.median(r["received_per_s"] for r in runs)
        print(f"median {name} (pid {os.getpid()}): {total:.2f} µs per datagram (user {user:.2f}), "
              f"{rate:,.0f} received/s")


if __name__ == "__main__":
    main()
