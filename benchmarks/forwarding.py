"""Forwarding benchmark: one publisher, N subscribers, each in its own process.

Starts ``pysfu serve`` on loopback, one publisher peer and N subscriber
peers (benchmarks.peers: real ICE/DTLS/SRTP, no codec work), waits until
every subscriber receives media, warms up, then measures over a fixed
window:

* the server process's CPU time (utime + stime from /proc/<pid>/stat) per
  forwarded packet and per received packet (packet counts from the
  server's /metrics: pysfu_packets_in / pysfu_packets_out, kind="video");
* ingress/egress packets/s, server CPU % of one core, server RSS;
* loss seen by the subscribers (RTP sequence gaps) and the forwarding
  latency publisher -> SFU -> subscriber (send time carried in the payload)
  of the packets sent during the window, read from the peers a second after
  it (a peer building its histogram would delay the others' packets on the
  generator's CPU); the packets later than 50 ms, lined up by arrival time
  and subscriber, to tell a server's stall from a peer left waiting;
* the load generator's own CPU, and the machine's (busy and steal, in all
  and per CPU), so a reader can tell whether the machine was saturated.

    python -m benchmarks.forwarding --subscribers 8 --rate 1000 --warmup 5 --duration 20
    python -m benchmarks.forwarding --subscribers 1,8,16 --repeat 3 --compare-uvloop
    python -m benchmarks.forwarding --subscribers 8 --compare-simulcast --repeat 3
    python -m benchmarks.forwarding --subscribers 8 --compare-ports --repeat 3
    python -m benchmarks.forwarding --subscribers 8 --compare-ref HEAD~1 --repeat 3
    python -m benchmarks.forwarding --subscribers 8,32 --compare-janus --janus-event-loops 1,default

The server runs as deployed, with one shared UDP port (``--udp-port``);
``--port-range`` gives it a port per peer connection instead, and
``--compare-ports`` runs every configuration in both modes, interleaved.
``--compare-ref REV`` runs every configuration on the working tree (or
``--ref``) and on a snapshot of REV, interleaved, so a change is measured
side by side with what it changes.

``--pin`` (benchmarks.pinning) runs the server, pysfu or Janus with every
thread it starts, alone on CPU 0, and the peers and this process on the
other CPUs; each run reports the CPUs it read back from every thread. The
options compose: with ``--compare-janus --compare-ref REV --compare-ports
--repeat 3`` each repeat runs, per N, pysfu on this code and on REV in each
port mode, then Janus once per ``--janus-event-loops`` setting; the summary
gives per configuration the median [min–max] of µs per forwarded packet,
its user and system parts, the kernel share (system / (user + system)),
loss and latency p50/p99, whether it holds (loss < 0.5 %, p99 < 50 ms), and
the ratios pysfu/Janus, this code/REV and single port/port range on the
medians.

    python -m benchmarks.forwarding --subscribers 8,32 --pin --compare-janus \
        --compare-ref db293e2 --repeat 3 --warmup 5 --duration 20

With ``--sfu janus`` the server is Janus VideoRoom (benchmarks.janus: Debian
``janus``, loopback only, ``--janus-event-loops``); ``--compare-janus`` runs
pysfu and Janus interleaved in one run and prints the pysfu/Janus ratio of
CPU per forwarded packet. Janus has no packet counters, so in both modes
packets are counted at the peers for every server: ingress = what the
publisher sent, forwarded = what the subscribers received.

With ``--simulcast`` the publisher sends three VP8 layers (rid q, h, f) the
way Chromium does, and the subscribers get the top one; the run then also
reports server CPU / (packets in + packets out), since the per-forwarded
figure carries the cost of receiving layers nobody gets.

Everything is on 127.0.0.1, bounded in time, and every process started is
killed at the end (also on error or Ctrl-C; children die with this process).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import aiohttp

from .peers import LATE_SLOT_NS, bucket_value
from .pinning import affinity, child_setup, cpu_sets, pin_benchmark

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
METRIC = re.compile(r'^pysfu_(\w+?)(?:_total)?\{(?:worker="\d+",)?kind="video"\} (\S+)$', re.M)
TARGET_US = 20.0  # issue's target: µs of server CPU per forwarded packet at N=8, 1000 pps


# --- /proc ---------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[int, int]:
    """(utime, stime) of a whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)


def tree_cpu_times(pid: int) -> tuple[int, int]:
    """cpu_times of a process plus its children (the workers of --workers N)."""
    utime, stime = cpu_times(pid)
    for child in children(pid):
        try:
            u, s = cpu_times(child)
        except OSError:
            continue
        utime, stime = utime + u, stime + s
    return utime, stime


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def cpu_ticks(pid: int) -> int:
    """utime + stime of a whole process (all threads), in clock ticks."""
    return sum(cpu_times(pid))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process's main thread."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if "ctxt_switches" in line:
                name, value = line.split(":")
                found[name.strip()] = int(value)
    return found.get("voluntary_ctxt_switches", 0), found.get("nonvoluntary_ctxt_switches", 0)


def ticks_by_cpu() -> dict[str, list[int]]:
    """Clock ticks since boot, user nice system idle iowait irq softirq steal:
    of all CPUs ("cpu") and of each ("cpu0", "cpu1", ...)."""
    with open("/proc/stat") as f:
        rows = [line.split() for line in f if line.startswith("cpu")]
    return {row[0]: [int(v) for v in row[1:9]] for row in rows}


def system_ticks() -> list[int]:
    """All CPUs' clock ticks since boot (ticks_by_cpu's "cpu")."""
    return ticks_by_cpu()["cpu"]


def load_by_cpu(before: dict[str, list[int]], after: dict[str, list[int]], window: float) -> dict:
    """Busy and steal % of each CPU: a vCPU the host took away stalls whoever runs on it."""
    loads = {cpu: machine_load(before[cpu], after[cpu], window)
             for cpu in after if cpu != "cpu" and cpu in before}
    return {cpu: {"busy_pct": v["machine_busy_pct"], "steal_pct": v["machine_steal_pct"]}
            for cpu, v in loads.items()}


def machine_load(before: list[int], after: list[int], window: float) -> dict:
    """Where the machine's CPU went during the window, in % of one core."""
    delta = [b - a for a, b in zip(before, after)]
    scale = 100 / (window * CLK_TCK)
    user, nice, system, idle, iowait, irq, softirq, steal = delta
    return {
        "machine_busy_pct": round((user + nice + system + irq + softirq) * scale, 1),
        "machine_softirq_pct": round((irq + softirq) * scale, 1),
        "machine_steal_pct": round(steal * scale, 1),
    }


def machine_info() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("aiortc", "aioice", "pylibsrtp", "aiohttp", "uvloop"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        **versions,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- code under test -------------------------------------------------------------


def free_udp_port(count: int = 1) -> int:
    """The first of ``count`` consecutive UDP ports free on 127.0.0.1 (one per
    worker), in 10000-19999: below Linux's ephemeral range, so no socket bound
    to port 0 (the clients' own) takes it before the server binds it, and
    below the ranges the tests give --udp-port-range (20000 and up)."""
    pick = random.SystemRandom()  # not the seeded global: concurrent runs must not pick alike
    for _ in range(100):
        first = pick.randrange(10000, 20000 - count)
        probes = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
        try:
            for port, probe in enumerate(probes, first):
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free UDP ports")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def code_info(ref: Optional[str]) -> dict:
    """Which code the server runs: a commit (--ref) or the working tree."""
    try:
        if ref:
            return {"ref": ref, "commit": git("rev-parse", "--short", ref), "dirty": False}
        dirty = bool(git("status", "--porcelain", "--", "sfu", "signaling"))
        return {"ref": "working tree", "commit": git("rev-parse", "--short", "HEAD"), "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"ref": ref or "working tree", "commit": "?", "dirty": None}


def snapshot(ref: str) -> Path:
    """A copy of the project at ``ref`` (plus this benchmarks/ package), so that
    edits made to the working tree while the benchmark runs do not leak in."""
    target = Path(tempfile.mkdtemp(prefix="pysfu-src-"))
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    shutil.rmtree(target / "benchmarks", ignore_errors=True)
    shutil.copytree(ROOT / "benchmarks", target / "benchmarks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return target


# --- processes -----------------------------------------------------------------


class PeerProcess:
    """A benchmarks.peers process, driven over its stdin/stdout."""

    def __init__(self, role: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.role = role
        self.proc = proc
        self.pid = proc.pid
        self.log_path = log_path
        self.hello: asyncio.Future = asyncio.get_running_loop().create_future()
        self._stats: asyncio.Queue = asyncio.Queue()
        self.errors: list[str] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            event = message.get("event")
            if event in ("ready", "media") and not self.hello.done():
                self.hello.set_result(message)
            elif event == "stats":
                self._stats.put_nowait(message)
            elif event == "error":
                self.errors.append(message.get("message", ""))
                if not self.hello.done():
                    self.hello.set_exception(RuntimeError(f"{self.role} {self.pid}: {message.get('message')}"))
        if not self.hello.done():
            self.hello.set_exception(RuntimeError(
                f"{self.role} {self.pid} exited before it was ready (log: {self.log_path})"))

    async def stats(self, timeout: float = 15.0, measure: Optional[tuple[int, int]] = None) -> dict:
        """The peer's counters; with ``measure`` (send times, monotonic ns), first
        restrict its latency histogram to packets sent in that window."""
        if measure is not None:
            self.proc.stdin.write(b"measure %d %d\n" % measure)
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self._stats.get(), timeout)

    def quit(self) -> None:
        try:
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.close()
        except (ConnectionError, RuntimeError, AttributeError):
            pass


async def start_peer(role: str, url: str, config: "RunConfig", workdir: Path, index: int) -> PeerProcess:
    log_path = workdir / f"{role}-{index}.log"
    argv = [sys.executable, "-m", "benchmarks.peers", role, "--url", url, "--room", "bench",
            "--name", f"{role}{index}", "--max-seconds", str(int(config.budget() + 60)),
            "--sfu", config.sfu, "--setup-timeout", str(config.setup_timeout)]
    if role == "publisher":
        argv += ["--rate", str(config.rate), "--payload-size", str(config.payload_size)]
        if config.layer_rates:
            argv += ["--simulcast", "--layer-rates", ",".join(f"{r:g}" for r in config.layer_rates)]
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=config.source or ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            preexec_fn=child_setup(cpu_sets(config.pin)[1], config.batch_peers),
        )
    return PeerProcess(role, proc, log_path)


def server_argv(port: int, uvloop: bool, source: Optional[Path] = None, workers: int = 1,
                room_limit: int = 100, udp_port: int = 0) -> list[str]:
    """``pysfu serve`` on loopback; ``python -m signaling`` when running a snapshot
    (the current directory then comes first on sys.path, before the editable install)."""
    script = Path(sys.executable).parent / "pysfu"
    base = [str(script)] if script.exists() and source is None else [sys.executable, "-m", "signaling"]
    argv = base + ["serve", "--port", str(port), "--ice-address", "127.0.0.1", "--log-level", "warning",
                   "--workers", str(workers), "--worker-room-limit", str(room_limit)]
    argv += ["--udp-port", str(udp_port)]  # 0: a port per connection
    return argv + ([] if uvloop else ["--no-uvloop"])


async def wait_healthy(http: str, proc: asyncio.subprocess.Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"server exited with code {proc.returncode} during startup")
            try:
                async with session.get(f"{http}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("server did not become healthy")


async def scrape(http: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{http}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as r:
            text = await r.text()
    totals: dict[str, float] = {}
    for name, value in METRIC.findall(text):  # summed over workers
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


async def stop_all(server: Optional[asyncio.subprocess.Process], peers: list[PeerProcess]) -> None:
    for peer in peers:
        peer.quit()
    if server is not None and server.returncode is None:
        server.send_signal(signal.SIGTERM)
    procs = [p.proc for p in peers] + ([server] if server is not None else [])
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 5)
    except asyncio.TimeoutError:
        pass
    for proc in procs:
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
    await asyncio.gather(*(p.wait() for p in procs), return_exceptions=True)
    for peer in peers:
        peer._reader.cancel()


# --- one run -------------------------------------------------------------------


@dataclass
class RunConfig:
    subscribers: int
    rate: float
    warmup: float
    duration: float
    uvloop: bool = True
    payload_size: int = 1100
    setup_timeout: float = 120.0
    profile: Optional[str] = None  # py-spy output (raw collapsed stacks) for the window
    pin: bool = False  # server alone on the first CPU, load generator on the others
    source: Optional[Path] = None  # project snapshot to run (--ref); None: the working tree
    batch_peers: bool = False  # load generator under SCHED_BATCH (no wakeup preemption)
    layer_rates: Optional[list[float]] = None  # simulcast: packets/s of q, h, f (sum = rate)
    workers: int = 1  # server worker processes; the room is spread evenly over them
    single_port: bool = False  # server in single UDP port mode
    probes: int = 0  # > 0: only this many subscribers read during the window, the rest are sinks
    code_label: str = ""  # which code, when comparing two (--compare-ref)
    sfu: str = "pysfu"  # or "janus" (benchmarks.janus)
    janus_event_loops: Optional[int] = 1  # Janus's event_loops; None: its default threading
    count_at_peers: bool = False  # count packets at the peers, not from the server's /metrics

    def budget(self) -> float:
        return self.setup_timeout + self.warmup + self.duration + 60


def percentile(histogram: dict[int, int], q: float) -> Optional[float]:
    """q-quantile (0..1) of a bucketed latency histogram, in ms."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * (total - 1)
    seen = 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen > rank:
            return bucket_value(key) / 1000
    return bucket_value(max(histogram)) / 1000


SINK_SETTLE = 3.0  # seconds between stopping the sinks and the window
MEASURE_LEAD = 0.5  # s between asking the peers for a latency window and its start
LATE_GRACE = 1.0  # s after the window for its last packets to arrive (later ones go unmeasured)


def _signal_all(peers: list[PeerProcess], signum: int) -> None:
    for peer in peers:
        try:
            os.kill(peer.pid, signum)
        except ProcessLookupError:
            pass


async def run_once(config: RunConfig, keep_logs: bool = False) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="pysfu-bench-"))
    port = free_port()
    http = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/ws"
    server: Optional[asyncio.subprocess.Process] = None
    janus = None  # benchmarks.janus.JanusServer with --sfu janus
    peers: list[PeerProcess] = []
    profiler: Optional[asyncio.subprocess.Process] = None
    failed = True
    server_log = workdir / "server.log"
    at_peers = config.count_at_peers or config.sfu == "janus"
    try:
        if config.sfu == "janus":
            from .janus import JanusServer  # here: benchmarks.janus imports drivers, which imports us

            janus = JanusServer(config.janus_event_loops, workdir=workdir / "janus",
                                preexec_fn=child_setup(cpu_sets(config.pin)[0]))
            await janus.start()
            server_pid, url, server_log = janus.pid, janus.url, janus.log_path
        else:
            with open(server_log, "wb") as log:
                server = await asyncio.create_subprocess_exec(
                    *server_argv(port, config.uvloop, config.source, config.workers,
                                 -(-(config.subscribers + 1) // config.workers),
                                 free_udp_port(config.workers) if config.single_port else 0),
                    cwd=config.source or ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=child_setup(cpu_sets(config.pin)[0]),
                )
            await wait_healthy(http, server, 30)
            server_pid = server.pid

        setup_started = time.monotonic()
        publisher = await start_peer("publisher", url, config, workdir, 0)
        peers.append(publisher)
        await asyncio.wait_for(publisher.hello, config.setup_timeout)
        subscribers = [await start_peer("subscriber", url, config, workdir, i + 1)
                       for i in range(config.subscribers)]
        peers += subscribers
        await asyncio.wait_for(asyncio.gather(*(s.hello for s in subscribers)), config.setup_timeout)
        setup_seconds = time.monotonic() - setup_started
        join_ms = sorted(s.hello.result().get("join_ms", 0) for s in subscribers)

        await asyncio.sleep(config.warmup)

        # --- window ------------------------------------------------------------
        # --probes K: the other subscribers are stopped (SIGSTOP) for the window, as sinks
        # the server still sends to (counted at the server); the K probes measure loss and latency
        probes = peers[:1 + config.probes] if config.probes and not at_peers else peers
        sinks = peers[len(probes):]
        if sinks:
            _signal_all(sinks, signal.SIGSTOP)
            await asyncio.sleep(SINK_SETTLE)  # the backlog of the warm-up drains first
        # latency counts for packets sent in the window, read a grace period after it
        sent_from = time.monotonic_ns() + int(MEASURE_LEAD * 1e9)
        sent_until = sent_from + int(config.duration * 1e9)
        before = await asyncio.gather(*(p.stats(measure=(sent_from, sent_until)) for p in probes))
        await asyncio.sleep(max(0.0, sent_from / 1e9 - time.monotonic()))
        m0 = {} if at_peers else await scrape(http)
        if config.profile:
            profiler = await start_profiler(server_pid, config.duration, config.profile,
                                            cpu_sets(config.pin)[1])
        t0 = time.monotonic()
        server0 = tree_cpu_times(server_pid)
        switches0 = context_switches(server_pid)
        peers0 = [cpu_ticks(p.pid) for p in peers]
        cpus0 = ticks_by_cpu()
        await asyncio.sleep(config.duration)
        server1 = tree_cpu_times(server_pid)
        switches1 = context_switches(server_pid)
        peers1 = [cpu_ticks(p.pid) for p in peers]
        cpus1 = ticks_by_cpu()
        t1 = time.monotonic()
        m1 = {} if at_peers else await scrape(http)
        await asyncio.sleep(max(0.0, sent_until / 1e9 + LATE_GRACE - time.monotonic()))
        after = await asyncio.gather(*(p.stats() for p in probes))
        _signal_all(sinks, signal.SIGCONT)
        if at_peers:
            m0, m1 = peer_counts(before), peer_counts(after)
        rss = rss_mb(server_pid)
        if profiler is not None:
            await asyncio.wait_for(profiler.wait(), 30)
        if server is not None and server.returncode is not None:
            raise RuntimeError(f"server exited with code {server.returncode} during the window")
        if janus is not None and janus.proc.poll() is not None:
            raise RuntimeError(f"janus exited with code {janus.proc.returncode} during the window")

        result = summarize(config, t1 - t0, (server1[0] - server0[0], server1[1] - server0[1]),
                           m0, m1, before, after,
                           [b - a for a, b in zip(peers0, peers1)],
                           machine_load(cpus0["cpu"], cpus1["cpu"], t1 - t0), rss, t0)
        result["cpus"] = load_by_cpu(cpus0, cpus1, t1 - t0)
        result["server_switches_per_s"] = round((switches1[0] - switches0[0]) / (t1 - t0))
        result["server_preemptions_per_s"] = round((switches1[1] - switches0[1]) / (t1 - t0))
        result["setup_s"] = round(setup_seconds, 1)
        result["join_ms_p50"] = join_ms[len(join_ms) // 2]
        result["join_ms_max"] = join_ms[-1]
        result["counted_at"] = "peers" if at_peers else "server /metrics"
        result["server_cpus"] = affinity([server_pid, *children(server_pid)])
        result["peer_cpus"] = affinity(p.pid for p in peers)
        if config.pin and result["server_cpus"] == result["peer_cpus"]:
            result["warnings"].append("--pin did not separate the server from the peers")
        errors, result["server_log_warnings"] = server_log_findings(server_log)
        if janus is not None:
            errors = ["janus: " + line for line in janus.log_errors()]
        result["warnings"] += errors
        peer_errors = [f"{p.role} {p.pid}: {e}" for p in peers for e in p.errors]
        result["warnings"] += peer_errors[:5]
        failed = False
        return result
    except Exception as exc:
        exited = [f"{p.role} {p.pid} exited with {p.proc.returncode}: {p.errors[-1:]}"
                  for p in peers if p.proc.returncode is not None]
        if exited:
            raise RuntimeError(f"{type(exc).__name__}: {exc}; {'; '.join(exited[:3])}") from exc
        raise
    finally:
        _signal_all(peers, signal.SIGCONT)
        await stop_all(server, peers)
        if janus is not None:
            await janus.stop()
        if profiler is not None and profiler.returncode is None:
            profiler.kill()
            await profiler.wait()
        if failed or keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def start_profiler(pid: int, duration: float, output: str,
                         cpus: Optional[set[int]]) -> asyncio.subprocess.Process:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate", "250",
        "--format", "raw", "--nonblocking", "--output", output,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=child_setup(cpus),
    )


def server_log_findings(path: Path) -> tuple[list[str], int]:
    """Error lines of the server's log, and how many WARNING lines it has."""
    found, warnings = [], 0
    try:
        for line in path.read_text(errors="replace").splitlines():
            if any(word in line for word in ("ERROR", "CRITICAL", "Traceback", "Exception")):
                found.append("server: " + line.strip()[:200])
            elif "WARNING" in line:
                warnings += 1
    except OSError:
        pass
    return found[:5], warnings


def peer_counts(stats: list[dict]) -> dict[str, float]:
    """Packets in and out of the server as the peers saw them: what the publisher
    sent (the server's ingress) and what the subscribers received (forwarded)."""
    return {"packets_in": stats[0]["sent"],
            "packets_out": sum(s["received"] for s in stats[1:])}


def summarize(config: RunConfig, window: float, server_ticks: tuple[int, int], m0: dict, m1: dict,
              before: list[dict], after: list[dict], peer_ticks: list[int],
              machine: dict, rss: float, start: float = 0.0) -> dict:
    tick_us = 1e6 / CLK_TCK
    cpu_us = sum(server_ticks) * tick_us
    packets_in = m1.get("packets_in", 0) - m0.get("packets_in", 0)
    packets_out = m1.get("packets_out", 0) - m0.get("packets_out", 0)
    pub0, pub1 = before[0], after[0]
    subs0, subs1 = before[1:], after[1:]
    expected = sum(b["expected"] - a["expected"] for a, b in zip(subs0, subs1))
    received = sum(b["received"] - a["received"] for a, b in zip(subs0, subs1))
    histogram: dict[int, int] = {}
    for stats in subs1:
        for key, count in stats["latency_hist"].items():
            histogram[int(key)] = histogram.get(int(key), 0) + count
    sub_cpu = [t * tick_us / (window * 1e6) * 100 for t in peer_ticks[1:]]
    late = late_packets([s.get("late_slots", {}) for s in subs1], sum(histogram.values()), start)
    pub_cpu = peer_ticks[0] * tick_us / (window * 1e6) * 100
    result: dict[str, Any] = {
        "subscribers": config.subscribers,
        "rate": config.rate,
        "sfu": config.sfu,
        "server_loop": (f"janus event_loops={config.janus_event_loops or 'default'}"
                        if config.sfu == "janus" else "uvloop" if config.uvloop else "asyncio"),
        "workers": config.workers,
        "pinned": config.pin,
        "batch_peers": config.batch_peers,
        "simulcast": bool(config.layer_rates),
        "single_port": config.single_port,
        "code_label": config.code_label,
        "layer_rates": config.layer_rates,
        "window_s": round(window, 2),
        "ingress_pps": round(packets_in / window, 1),
        "egress_pps": round(packets_out / window, 1),
        "publisher_pps": round((pub1["sent"] - pub0["sent"]) / window, 1),
        "server_cpu_pct": round(cpu_us / (window * 1e6) * 100, 1),
        "server_user_pct": round(server_ticks[0] * tick_us / (window * 1e6) * 100, 1),
        "server_sys_pct": round(server_ticks[1] * tick_us / (window * 1e6) * 100, 1),
        "us_per_forwarded": round(cpu_us / packets_out, 2) if packets_out else None,
        "us_user_per_forwarded": round(server_ticks[0] * tick_us / packets_out, 2) if packets_out else None,
        "us_sys_per_forwarded": round(server_ticks[1] * tick_us / packets_out, 2) if packets_out else None,
        "kernel_share_pct": round(server_ticks[1] / sum(server_ticks) * 100, 1) if sum(server_ticks) else None,
        "us_per_received": round(cpu_us / packets_in, 2) if packets_in else None,
        "us_per_in_plus_out": round(cpu_us / (packets_in + packets_out), 2) if packets_in + packets_out else None,
        "subscriber_pps_avg": round(received / window / max(1, len(subs1)), 1),
        "loss_pct": round(max(0, expected - received) / expected * 100, 3) if expected else None,
        "server_lost_in": int(m1.get("packets_lost_in", 0) - m0.get("packets_lost_in", 0)),
        "latency_p50_ms": _round(percentile(histogram, 0.50), 2),
        "latency_p99_ms": _round(percentile(histogram, 0.99), 2),
        "latency_max_ms": _round(bucket_value(max(histogram)) / 1000, 1) if histogram else None,
        **late,
        "server_rss_mb": round(rss, 1),
        "publisher_cpu_pct": round(pub_cpu, 1),
        "subscriber_cpu_pct_avg": round(statistics.mean(sub_cpu), 1) if sub_cpu else 0,
        "subscriber_cpu_pct_max": round(max(sub_cpu), 1) if sub_cpu else 0,
        "loadgen_cpu_pct": round(pub_cpu + sum(sub_cpu), 1),
        **machine,
        "machine_cores": os.cpu_count(),
        "publisher_max_lag_ms": pub1["max_lag_ms"],
        "publisher_plis": pub1["plis"] - pub0["plis"],
        "publisher_layers": pub1.get("layers"),
        "publisher_catchup_resets": pub1["catchup_resets"] - pub0["catchup_resets"],
        "keyframe_requests_sent": int(m1.get("keyframe_requests_sent", 0) - m0.get("keyframe_requests_sent", 0)),
        "nacks_received": int(m1.get("nacks_received", 0) - m0.get("nacks_received", 0)),
        "warnings": [],
    }
    result["other_cpu_pct"] = round(max(0.0, result["machine_busy_pct"] - result["server_cpu_pct"]
                                        - result["loadgen_cpu_pct"]), 1)
    warnings = result["warnings"]
    if not packets_in:
        warnings.append("the server counted no received packets in the window")
    if not packets_out:
        warnings.append("the server counted no forwarded packets in the window")
    elif packets_in:
        # simulcast: each subscriber gets the top layer only (no settings sent)
        share = config.layer_rates[-1] / sum(config.layer_rates) if config.layer_rates else 1.0
        expected_ratio = config.subscribers * share
        if abs(packets_out / packets_in - expected_ratio) > 0.05 * expected_ratio:
            warnings.append(f"egress/ingress = {packets_out / packets_in:.2f}, expected {expected_ratio:.2f}")
    if result["publisher_pps"] < 0.95 * config.rate:
        warnings.append(f"publisher sent only {result['publisher_pps']} pps of {config.rate}")
    if result["loss_pct"] is not None and result["loss_pct"] > 0.5:
        warnings.append(f"subscribers lost {result['loss_pct']}% of packets")
    if result["machine_busy_pct"] and result["machine_busy_pct"] > 0.9 * 100 * os.cpu_count():
        warnings.append("the machine was saturated: figures are inflated")
    if result["other_cpu_pct"] > 25:
        warnings.append(f"{result['other_cpu_pct']}% of a core went to other processes (noisy machine)")
    return result


def late_packets(late_slots: list[dict[str, int]], measured: int, start: float) -> dict:
    """Who was late (> 50 ms) and when: late packets lined up by 10 ms of arrival.

    A stall of the server, or of the whole generator CPU, makes nearly every
    subscriber late in the same slots ("together"); a subscriber the
    scheduler left waiting is late on its own."""
    by_slot: dict[int, list[int]] = {}
    for slots in late_slots:
        for slot, count in slots.items():
            by_slot.setdefault(int(slot), []).append(count)
    total = sum(sum(counts) for counts in by_slot.values())
    together = sum(sum(counts) for counts in by_slot.values() if len(counts) > len(late_slots) / 2)
    per_peer = sorted((sum(slots.values()) for slots in late_slots), reverse=True)
    # the 100 ms periods they arrived in, in s from the window's start (the peers' monotonic clock)
    periods = sorted({math.floor((slot * LATE_SLOT_NS / 1e9 - start) * 10) / 10 for slot in by_slot})
    return {
        "late_pct": round(total / measured * 100, 3) if measured else None,
        "late_together_pct": round(together / total * 100, 1) if total else None,
        "late_slots": len(by_slot),
        "late_spans": len(periods),
        "late_peers": sum(1 for n in per_peer if n),
        "late_top_peers": per_peer[:3],
        "late_at_s": periods[:30],
    }


def _round(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(value, digits)


# --- output --------------------------------------------------------------------


def print_result(result: dict) -> None:
    r = result
    lines = [
        f"== N={r['subscribers']} subscribers, {r['rate']:g} pps in, server on {r['server_loop']}"
        f"{', pinned to its own CPU' if r['pinned'] else ''}"
        f"{', peers SCHED_BATCH' if r.get('batch_peers') else ''}"
        f"{', simulcast ' + '/'.join(f'{x:g}' for x in r['layer_rates']) + ' pps (q/h/f)' if r.get('simulcast') else ', one layer'}"
        f"{', single UDP port' if r.get('single_port') else ''}"
        f"{', code ' + r['code_label'] if r.get('code_label') else ''}"
        f", {r['window_s']} s window",
        f"  ingress {r['ingress_pps']:.0f} pkt/s   egress {r['egress_pps']:.0f} pkt/s   "
        f"(publisher sent {r['publisher_pps']:.0f}/s; counted at {r.get('counted_at')})",
        f"  server CPU {r['server_cpu_pct']:.1f}% of one core (user {r['server_user_pct']}%, "
        f"system {r['server_sys_pct']}%)   RSS {r['server_rss_mb']} MB   "
        f"switches/s: {r.get('server_switches_per_s')} voluntary, "
        f"{r.get('server_preemptions_per_s')} preempted",
        f"  server CPU per forwarded packet: {_fmt(r['us_per_forwarded'])} µs "
        f"(user {_fmt(r.get('us_user_per_forwarded'))}, system {_fmt(r.get('us_sys_per_forwarded'))}: "
        f"kernel share {_fmt(r.get('kernel_share_pct'), 1)}%)   "
        f"per received packet: {_fmt(r['us_per_received'])} µs   "
        f"per packet in+out: {_fmt(r.get('us_per_in_plus_out'))} µs   "
        f"(each subscriber got {r.get('subscriber_pps_avg', 0):.0f} pkt/s)",
        f"  loss at subscribers {_fmt(r['loss_pct'], 3)}%   (server ingress lost {r['server_lost_in']})",
        f"  forward latency p50 {_fmt(r['latency_p50_ms'])} ms   p99 {_fmt(r['latency_p99_ms'])} ms   "
        f"max {_fmt(r['latency_max_ms'], 1)} ms;  later than 50 ms: {_fmt(r.get('late_pct'), 3)}% "
        f"({r.get('late_together_pct')}% of them with most subscribers late in the same 10 ms, "
        f"{r.get('late_spans')} periods of 100 ms, {r.get('late_peers')} subscribers, "
        f"most late {r.get('late_top_peers')}, at {r.get('late_at_s')} s)",
        f"  join (ws connect -> first packet) p50 {r.get('join_ms_p50', 0):.0f} ms  "
        f"max {r.get('join_ms_max', 0):.0f} ms;  setup {r.get('setup_s', 0)} s",
        f"  load generator CPU: publisher {r['publisher_cpu_pct']}%, subscribers avg "
        f"{r['subscriber_cpu_pct_avg']}% max {r['subscriber_cpu_pct_max']}% (total "
        f"{r['loadgen_cpu_pct']}%)",
        f"  CPUs: server {r.get('server_cpus', '?')}, peers {r.get('peer_cpus', '?')}",
        f"  machine: busy {r['machine_busy_pct']}% of {r['machine_cores'] * 100}% "
        f"(irq+softirq {r['machine_softirq_pct']}%, outside this benchmark ~{r['other_cpu_pct']}%), "
        f"steal {r['machine_steal_pct']}%; by CPU " + ", ".join(
            f"{cpu} busy {v['busy_pct']}% steal {v['steal_pct']}%" for cpu, v in r.get("cpus", {}).items()),
    ]
    if r.get("publisher_layers"):
        lines.append("  publisher layers (since start): " + ", ".join(
            f"{rid} sent {v['sent']} keyframes {v['keyframes']} PLIs {v['plis']}"
            for rid, v in r["publisher_layers"].items()))
    for warning in r["warnings"]:
        lines.append(f"  WARNING: {warning}")
    print("\n".join(lines), flush=True)


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


HOLDS_LOSS_PCT, HOLDS_P99_MS = 0.5, 50.0  # issue 13: a server "holds" below both


def _span(values: list[float], digits: int = 2) -> str:
    """median [min–max]"""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def _values(runs: list[dict], key: str) -> list[float]:
    return [r[key] for r in runs if r.get(key) is not None]


def _median(runs: list[dict], key: str) -> Optional[float]:
    values = _values(runs, key)
    return statistics.median(values) if values else None


def groups_of(results: list[dict]) -> dict[tuple, list[dict]]:
    """Runs by (N, pps in, variant), in the order the variants first ran."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["subscribers"], r["rate"], variant(r)), []).append(r)
    return dict(sorted(groups.items(), key=lambda item: item[0][:2]))  # stable: run order within N


def holds(runs: list[dict]) -> Optional[bool]:
    """Loss < 0.5 % and p99 < 50 ms, on the medians of the runs."""
    loss, p99 = _median(runs, "loss_pct"), _median(runs, "latency_p99_ms")
    if loss is None or p99 is None:
        return None
    return loss < HOLDS_LOSS_PCT and p99 < HOLDS_P99_MS


def summary_table(results: list[dict]) -> str:
    """A markdown table: one row per (N, variant), median [min–max] over the repeats."""
    head = ("| N | pps in | variant | runs | µs/forwarded | user µs | system µs | kernel share % "
            "| µs/received | loss % | latency p50 ms | latency p99 ms | holds | server CPU % "
            "| egress pps | RSS MB | load gen CPU % | machine busy % |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for (n, rate, label), runs in groups_of(results).items():
        held = holds(runs)
        rows.append(
            f"| {n} | {rate:g} | {label} | {len(runs)} | {_span(_values(runs, 'us_per_forwarded'))} | "
            f"{_span(_values(runs, 'us_user_per_forwarded'))} | {_span(_values(runs, 'us_sys_per_forwarded'))} | "
            f"{_span(_values(runs, 'kernel_share_pct'), 1)} | {_span(_values(runs, 'us_per_received'), 1)} | "
            f"{_span(_values(runs, 'loss_pct'), 3)} | {_span(_values(runs, 'latency_p50_ms'))} | "
            f"{_span(_values(runs, 'latency_p99_ms'))} | {'n/a' if held is None else 'yes' if held else 'no'} | "
            f"{_fmt(_median(runs, 'server_cpu_pct'), 1)} | {_fmt(_median(runs, 'egress_pps'), 0)} | "
            f"{_fmt(_median(runs, 'server_rss_mb'), 0)} | {_fmt(_median(runs, 'loadgen_cpu_pct'), 0)} | "
            f"{_fmt(_median(runs, 'machine_busy_pct'), 0)} |"
        )
    return "\n".join(rows) + fit_lines(results)


def simulcast_ratio(results: list[dict]) -> str:
    """Simulcast against single-layer cost, per N and loop, from the medians."""
    out = []
    groups: dict[tuple, dict[bool, list[dict]]] = {}
    for r in results:
        if r.get("us_per_forwarded") is not None:
            groups.setdefault((r["subscribers"], r["server_loop"]), {}).setdefault(
                bool(r.get("simulcast")), []).append(r)
    for (n, loop), modes in sorted(groups.items()):
        if len(modes) < 2:
            continue
        parts = []
        for key, label in (("us_per_forwarded", "per forwarded"), ("us_per_in_plus_out", "per packet in+out"),
                           ("server_cpu_pct", "server CPU")):
            one = statistics.median(r[key] for r in modes[False])
            sim = statistics.median(r[key] for r in modes[True])
            parts.append(f"{label} {sim:.1f} / {one:.1f} = {sim / one:.2f}x")
        out.append(f"\nsimulcast / single-layer at N={n} ({loop}), medians: " + "; ".join(parts))
    return "".join(out)


def _ratio_line(n: int, a_label: str, a: list[dict], b_label: str, b: list[dict]) -> Optional[str]:
    """a / b of the median µs per forwarded packet (and of its user part)."""
    parts = []
    for key, what in (("us_per_forwarded", "µs per forwarded"), ("us_user_per_forwarded", "user µs")):
        ma, mb = _median(a, key), _median(b, key)
        if ma is None or not mb:
            continue
        parts.append(f"{what} {ma:.2f} / {mb:.2f} = {ma / mb:.2f}x")
    if not parts:
        return None
    return f"N={n}: {a_label} / {b_label} (medians of {len(a)} and {len(b)} runs): " + "; ".join(parts)


def ratios(results: list[dict]) -> str:
    """pysfu / Janus, this code / the other (--compare-ref) and single port /
    port range, each on the medians of variants that differ in that alone."""
    out = []
    groups = groups_of(results)
    # pysfu / Janus: every pysfu variant against every Janus setting, same load
    for (n, rate, label), runs in groups.items():
        for (n2, rate2, theirs), janus_runs in groups.items():
            if (n2, rate2) == (n, rate) and runs[0]["sfu"] == "pysfu" and janus_runs[0]["sfu"] == "janus" \
                    and bool(runs[0].get("simulcast")) == bool(janus_runs[0].get("simulcast")):
                out.append(_ratio_line(n, label, runs, theirs, janus_runs))
    for dimension, first_over_second in (("code_label", True), ("single_port", False)):
        sides: dict[tuple, list[tuple[str, list[dict]]]] = {}
        for (n, rate, label), runs in groups.items():
            if runs[0]["sfu"] == "pysfu":
                sides.setdefault((n, rate, variant(runs[0], without=dimension)), []).append((label, runs))
        for (n, _, _), pair in sides.items():
            if len(pair) == 2:
                (a_label, a), (b_label, b) = pair if first_over_second else pair[::-1]
                out.append(_ratio_line(n, a_label, a, b_label, b))
    return "\n".join(line for line in out if line)


def variant_name(config: RunConfig) -> str:
    if config.sfu == "janus":
        return f"janus event_loops={config.janus_event_loops or 'default'}"
    return "uvloop" if config.uvloop else "asyncio"


def variant(r: dict, without: str = "") -> str:
    """What distinguishes a run's configuration, N and rate aside (``without``: leave that out)."""
    pysfu = r.get("sfu", "pysfu") == "pysfu"
    parts = {
        "server_loop": ("pysfu " if pysfu else "") + r["server_loop"],
        "pinned": "pinned" if r.get("pinned") else "",
        "batch_peers": "peers SCHED_BATCH" if r.get("batch_peers") else "",
        "simulcast": "simulcast" if r.get("simulcast") else "",
        "workers": f"{r['workers']} workers" if r.get("workers", 1) > 1 else "",
        "single_port": ("single port" if r.get("single_port") else "port range") if pysfu else "",
        "code_label": r.get("code_label") or "",
    }
    return ", ".join(text for name, text in parts.items() if text and name != without)


def fit_lines(results: list[dict]) -> str:
    """Least-squares split of the server's CPU into a cost per received and a
    cost per forwarded packet, per server loop, when several N were run."""
    out = []
    by_loop: dict[str, list[dict]] = {}
    for r in results:
        if r.get("us_per_forwarded") is not None and not r.get("simulcast"):
            by_loop.setdefault(variant(r), []).append(r)
    for loop, runs in sorted(by_loop.items()):
        if len({r["subscribers"] for r in runs}) < 2:
            continue
        # cpu_us_per_s = a * ingress_pps + b * egress_pps
        rows = [(r["ingress_pps"], r["egress_pps"], r["server_cpu_pct"] * 1e4) for r in runs]
        sxx = sum(x * x for x, _, _ in rows); syy = sum(y * y for _, y, _ in rows)
        sxy = sum(x * y for x, y, _ in rows)
        sxz = sum(x * z for x, _, z in rows); syz = sum(y * z for _, y, z in rows)
        det = sxx * syy - sxy * sxy
        if not det:
            continue
        a = (sxz * syy - syz * sxy) / det
        b = (syz * sxx - sxz * sxy) / det
        out.append(f"\nfit ({loop}): server CPU ≈ {a:.1f} µs per received packet + "
                   f"{b:.1f} µs per forwarded packet")
    return "".join(out)


# --- CLI -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.forwarding",
        description="Server CPU per forwarded packet: one publisher, N subscribers, one process each.",
    )
    parser.add_argument("--subscribers", default="8",
                        help="subscriber count, or a comma-separated list of counts (default 8)")
    parser.add_argument("--rate", type=float, default=1000, help="publisher packets/s (default 1000)")
    parser.add_argument("--payload-size", type=int, default=1100, help="RTP payload bytes (default 1100)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds after all subscribers get media")
    parser.add_argument("--duration", type=float, default=20, help="measurement window, seconds")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration")
    parser.add_argument("--workers", default="1",
                        help="server worker processes, or a comma-separated list to compare (default 1); "
                        "the room is spread evenly over the workers, CPU counts all of them")
    parser.add_argument("--no-uvloop", action="store_true", help="server on asyncio's default loop")
    parser.add_argument("--compare-uvloop", action="store_true",
                        help="run every configuration with the server on uvloop and on asyncio")
    parser.add_argument("--pin", action="store_true",
                        help="run the server (every thread, pysfu or Janus) alone on CPU 0, and the "
                        "peers, the profiler and this process on the other CPUs (CPU 1 on 2 cores)")
    parser.add_argument("--batch-peers", action="store_true",
                        help="run the load generator under SCHED_BATCH, so that a peer woken by a "
                        "packet does not preempt the server (closer to remote peers)")
    parser.add_argument("--ref", metavar="REV",
                        help="benchmark the server as committed at REV (a git snapshot), "
                        "not the working tree")
    parser.add_argument("--simulcast", action="store_true",
                        help="the publisher sends three VP8 simulcast layers (rid q, h, f; see "
                        "--layer-rates, whose sum replaces --rate); subscribers get the top layer")
    parser.add_argument("--compare-simulcast", action="store_true",
                        help="run every configuration single-layer (--rate) and simulcast, interleaved")
    parser.add_argument("--probes", type=int, default=0, metavar="K",
                        help="only K subscribers read during the window (loss and latency are theirs); the "
                        "others are stopped with SIGSTOP, sinks the server still sends to, so the load "
                        "generator's CPU stays small (egress counted at the server)")
    parser.add_argument("--port-range", action="store_true",
                        help="server with a UDP port per peer connection (--udp-port 0) instead of "
                        "its default, one shared UDP port")
    parser.add_argument("--single-port", action="store_true",
                        help="one shared UDP port (the default; kept for older command lines)")
    parser.add_argument("--compare-ports", action="store_true",
                        help="run every configuration with a port per connection and with one "
                        "shared UDP port, interleaved")
    parser.add_argument("--compare-ref", metavar="REV",
                        help="also run every configuration on a snapshot of REV, interleaved "
                        "with the working tree (or --ref)")
    parser.add_argument("--layer-rates", default="150,300,550",
                        help="packets/s of the q, h, f layers with --simulcast (default 150,300,550)")
    parser.add_argument("--sfu", choices=["pysfu", "janus"], default="pysfu",
                        help="the server to measure: pysfu, or Janus VideoRoom (make janus)")
    parser.add_argument("--compare-janus", action="store_true",
                        help="run every configuration on pysfu and on Janus, interleaved, packets "
                        "counted at the peers for both, and print the pysfu/Janus ratio")
    parser.add_argument("--janus-event-loops", default="1",
                        help="Janus's event_loops: a number, 'default' (a thread per handle), "
                        "or a comma-separated list of them to run each (default 1)")
    parser.add_argument("--setup-timeout", type=float, default=120)
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy record the server during the window (collapsed stacks); "
                        "the profiler perturbs the figures")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per run")
    return parser


async def main_async(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)
    info = machine_info()
    code = code_info(args.ref)
    source = snapshot(args.ref) if args.ref else None
    print(f"code: {code['ref']} at {code['commit']}"
          f"{' (with uncommitted changes in sfu/ or signaling/)' if code['dirty'] else ''}"
          f"{f', snapshot in {source}' if source else ''}", flush=True)
    codes = [(code, source)]
    if args.compare_ref:
        other = code_info(args.compare_ref)
        codes.append((other, snapshot(args.compare_ref)))
        print(f"compared with: {other['ref']} at {other['commit']}, snapshot in {codes[1][1]}", flush=True)
    try:
        return await run_matrix(args, info, codes)
    finally:
        for _, path in codes:
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)


def run_plan(args: argparse.Namespace, codes: list[tuple[dict, Optional[Path]]]) -> list[RunConfig]:
    """Every run in order: per repeat and N, each pysfu variant on each code
    (working tree, then --compare-ref), then each Janus setting once (Janus
    has no code, port mode or workers of ours), so that all are interleaved."""
    counts = [int(n) for n in str(args.subscribers).split(",") if n.strip()]
    loops = [True, False] if args.compare_uvloop else [not args.no_uvloop]
    worker_counts = [int(w) for w in str(args.workers).split(",") if w.strip()]
    event_loops = [None if v.strip() == "default" else int(v)
                   for v in args.janus_event_loops.split(",") if v.strip()]
    layer_rates = [float(r) for r in args.layer_rates.split(",")]
    modes = ([None, layer_rates] if args.compare_simulcast
             else [layer_rates] if args.simulcast else [None])
    ports = [False, True] if args.compare_ports else [not args.port_range]
    pysfu = args.sfu == "pysfu" or args.compare_janus
    janus = args.sfu == "janus" or args.compare_janus
    plan = []
    for _, n, mode in itertools.product(range(args.repeat), counts, modes):
        base = dict(subscribers=n, rate=sum(mode) if mode else args.rate, warmup=args.warmup,
                    layer_rates=mode, duration=args.duration, payload_size=args.payload_size,
                    setup_timeout=args.setup_timeout, profile=args.profile, pin=args.pin,
                    batch_peers=args.batch_peers, count_at_peers=args.compare_janus, probes=args.probes)
        if pysfu:
            for uvloop, workers, single_port, (code, source) in itertools.product(
                    loops, worker_counts, ports, codes):
                plan.append(RunConfig(**base, uvloop=uvloop, source=source, workers=workers,
                                      single_port=single_port,
                                      code_label=code_label(code) if len(codes) > 1 else ""))
        if janus:
            plan += [RunConfig(**base, sfu="janus", janus_event_loops=el) for el in event_loops]
    return plan


def code_label(code: dict) -> str:
    if code["ref"] == "working tree":
        return f"working tree {code['commit']}" + (" (modified)" if code["dirty"] else "")
    return code["commit"]


async def run_matrix(args: argparse.Namespace, info: dict, codes: list[tuple[dict, Optional[Path]]]) -> int:
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
          f"aiortc {info['aiortc']}, aioice {info['aioice']}, pylibsrtp {info['pylibsrtp']}, "
          f"uvloop {info['uvloop']}, kernel {info['kernel']}", flush=True)
    if args.pin:
        print(pin_benchmark(), flush=True)
    results = []
    failures = 0
    plan = run_plan(args, codes)
    runs_per_repeat = max(1, len(plan) // max(1, args.repeat))
    for index, config in enumerate(plan):
        try:
            result = await asyncio.wait_for(run_once(config, args.keep_logs), config.budget())
        except (Exception, asyncio.TimeoutError) as exc:
            failures += 1
            print(f"== N={config.subscribers} run {index // runs_per_repeat + 1} ({variant_name(config)}"
                  f"{', ' + config.code_label if config.code_label else ''}) FAILED: "
                  f"{type(exc).__name__}: {exc}", flush=True)
            continue
        result["run"] = index // runs_per_repeat + 1
        result["code"] = next((c for c, _ in codes if code_label(c) == config.code_label), codes[0][0])
        results.append(result)
        print_result(result)
        if args.json:
            print(json.dumps({**result, "machine": info}), flush=True)
    if len(results) > 1:
        print()
        print(summary_table(results))
        print(simulcast_ratio(results))
    print(ratios(results))
    for r in results:
        if (r["subscribers"] == 8 and r["rate"] == 1000 and r["us_per_forwarded"] is not None
                and not r.get("simulcast") and r["sfu"] == "pysfu"):
            verdict = "meets" if r["us_per_forwarded"] <= TARGET_US else "misses"
            print(f"target ≤ {TARGET_US:g} µs/forwarded at N=8, 1000 pps: run {r['run']} "
                  f"({variant(r)}) {verdict} it with {r['us_per_forwarded']} µs")
    return 1 if failures or not results else 0


def main(argv: Optional[list[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = asyncio.run(main_async(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every process started was stopped", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
