"""The supervisor of `pysfu serve --workers N` (issue 7): it runs N worker
processes (signaling/scaling/worker.py), restarts one that dies, routes the
control messages workers send each other, and places participants on
workers by load.

Each worker gets its own UDP port for media: udp_port + worker index (7882,
7883, ... by default), or its own slice of the port range. Consecutive
ports rather than one port shared through SO_REUSEPORT: the kernel would
spread a client's datagrams over the workers by address hash, not to the
worker that holds its connection. Control goes over each worker's
stdin/stdout as JSON lines (signaling/scaling/control.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from sfu import udp_mux

from ..app import bind_media_ports
from ..config import Cluster, ServerConfig
from . import control as c

log = logging.getLogger(__name__)

RESTART_DELAY = 0.5  # seconds before a crashed worker is started again
READY_TIMEOUT = 30.0


@dataclass
class Worker:
    index: int
    config: ServerConfig
    proc: Optional[asyncio.subprocess.Process] = None
    port: int = 0  # internal HTTP/WebSocket port on 127.0.0.1
    relay_port: int = 0
    pid: int = 0
    generation: int = 0  # +1 on every (re)start
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    #: Open client sessions relayed to this worker, by room (kept by the front).
    sessions: Counter = field(default_factory=Counter)
    #: Egress packets per second, from its load reports.
    packets_out_rate: float = 0.0
    _last_report: tuple[float, int] = (0.0, 0)

    @property
    def alive(self) -> bool:
        return self.ready.is_set()

    def load(self) -> float:
        """Placement score: participants, plus forwarding work (1000
        egress packets/s weigh like one participant)."""
        return sum(self.sessions.values()) + self.packets_out_rate / 1000

    def take_report(self, report: c.Load) -> None:
        now = time.monotonic()
        last_time, last_out = self._last_report
        if last_time and now > last_time:
            self.packets_out_rate = max(0.0, (report.packets_out - last_out) / (now - last_time))
        self._last_report = (now, report.packets_out)


def split_port_range(port_min: int, port_max: int, count: int) -> list[tuple[int, int]]:
    """Slices of [port_min, port_max], one per worker ((0, 0): any port)."""
    if port_min == 0:
        return [(0, 0)] * count
    size = (port_max - port_min + 1) // count
    if size < 2:
        raise ValueError(f"UDP port range {port_min}-{port_max} is too small for {count} workers")
    slices = [(port_min + i * size, port_min + (i + 1) * size - 1) for i in range(count)]
    slices[-1] = (slices[-1][0], port_max)
    return slices


def place(room: str, workers: list[Worker], room_limit: int) -> Optional[Worker]:
    """The worker for a new participant of ``room``: a worker that already
    hosts the room while it has fewer than ``room_limit`` of its
    participants there, else the least loaded worker (preferring one the
    room is not on yet, so that a big room spreads)."""
    alive = [w for w in workers if w.alive]
    if not alive:
        return None
    hosting = [w for w in alive if w.sessions[room] > 0]
    roomy = [w for w in hosting if w.sessions[room] < room_limit]
    if roomy:
        return min(roomy, key=lambda w: (w.sessions[room], w.load(), w.index))
    others = [w for w in alive if w not in hosting] or alive
    return min(others, key=lambda w: (w.load(), w.index))


class Supervisor:
    def __init__(self, config: ServerConfig, count: int) -> None:
        self.config = config
        #: Proves to a worker that a request comes from the front (its
        #: X-Forwarded-For is then believed); new on every start.
        self.front_secret = secrets.token_urlsafe(32)
        ranges = split_port_range(config.sfu.ice.port_min, config.sfu.ice.port_max, count)
        if config.sfu.ice.udp_port + count - 1 > 65535:
            raise ValueError(f"UDP ports {config.sfu.ice.udp_port} + {count} workers go past 65535")
        self.workers = [Worker(i, self._worker_config(i, ranges[i])) for i in range(count)]
        self.restarts = 0
        self.on_worker_lost: Callable[[Worker], None] = lambda worker: None
        self._stopping = False
        self._tasks: list[asyncio.Task] = []

    def _worker_config(self, index: int, ports: tuple[int, int]) -> ServerConfig:
        ice = self.config.sfu.ice
        # single-port mode: worker i listens on udp_port + i (open that many ports)
        udp_port = ice.udp_port + index if ice.udp_port else 0
        ice = ice.model_copy(update={"port_min": ports[0], "port_max": ports[1], "udp_port": udp_port})
        sfu = self.config.sfu.model_copy(update={"ice": ice})
        return self.config.model_copy(update={
            "worker_index": index, "host": "127.0.0.1", "port": 0, "workers": 1, "sfu": sfu,
            "cluster": Cluster(),  # the front is the node in the Redis cluster, not each worker
        })

    def check_udp_ports(self) -> None:
        """Single-port mode: raise MediaPortError now if a worker's port is
        taken (that worker would only crash and restart). On the running loop."""
        for worker in self.workers:
            if worker.config.sfu.ice.udp_port:
                udp_mux.close_shared(bind_media_ports(worker.config.sfu.ice))

    async def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._keep_running(w)) for w in self.workers]
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in self.workers)), READY_TIMEOUT)

    async def _keep_running(self, worker: Worker) -> None:
        while not self._stopping:
            try:
                await self._run_once(worker)
            except Exception:
                log.exception("worker %d failed", worker.index)
            if self._stopping:
                return
            worker.ready.clear()
            self.restarts += 1
            log.warning("worker %d (pid %d) exited: restarting it", worker.index, worker.pid)
            self.on_worker_lost(worker)
            worker.sessions.clear()
            self.broadcast(c.WorkerGone(worker=worker.index))
            await asyncio.sleep(RESTART_DELAY)

    async def _run_once(self, worker: Worker) -> None:
        argv = [sys.executable, "-m", "signaling.scaling.worker"]
        if not worker.config.uvloop:
            argv.append("--no-uvloop")
        proc = worker.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24,
        )
        worker.pid = proc.pid
        self._send(worker, c.Start(config=worker.config, front_secret=self.front_secret))
        try:
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                self._on_message(worker, c.decode(c.TO_SUPERVISOR, line))
        finally:
            worker.ready.clear()
            if proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()

    def _on_message(self, worker: Worker, message: c.Ready | c.Load | c.To) -> None:
        if isinstance(message, c.Ready):
            worker.port, worker.relay_port, worker.pid = message.port, message.relay_port, message.pid
            worker.generation += 1
            worker.ready.set()
            log.info("worker %d ready (pid %d, port %d)", worker.index, worker.pid, worker.port)
        elif isinstance(message, c.Load):
            worker.take_report(message)
        elif isinstance(message, c.To):
            target = self.workers[message.worker] if 0 <= message.worker < len(self.workers) else None
            if target is not None and target.alive:
                self._send(target, message.msg)

    def _send(self, worker: Worker, message: c.Start | c.ToWorker) -> None:
        proc = worker.proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(c.encode(message))

    def broadcast(self, message: c.ToWorker) -> None:
        for worker in self.workers:
            if worker.alive:
                self._send(worker, message)

    def joining(self, worker: Worker, room: str) -> None:
        """A client session of ``room`` goes to ``worker``: tell it the other
        workers that host the room, so that the parts meet."""
        others = {w.index: w.relay_port for w in self.workers
                  if w is not worker and w.alive and w.sessions[room] > 0}
        worker.sessions[room] += 1
        if others:
            self._send(worker, c.Hosts(room=room, workers=others))

    def left(self, worker: Worker, room: str, generation: int) -> None:
        if worker.generation == generation and worker.sessions[room] > 0:
            worker.sessions[room] -= 1
            if worker.sessions[room] == 0:
                del worker.sessions[room]

    async def stop(self, grace: float) -> None:
        """Workers drain (clients get leave), then exit."""
        self._stopping = True
        for worker in self.workers:
            self._send(worker, c.Stop(grace=grace))
        for worker in self.workers:
            if worker.proc is None:
                continue
            try:
                await asyncio.wait_for(worker.proc.wait(), grace + 5)
            except asyncio.TimeoutError:
                worker.proc.kill()
                await worker.proc.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
