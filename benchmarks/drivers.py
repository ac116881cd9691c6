"""The seam between the load generator and the SFU under test.

The load generator (benchmarks.loadgen) drives any SFU through two small
interfaces, so that the same load runs against pysfu and Janus:

* a ``ServerDriver`` starts and stops the server, names the process whose
  CPU and memory are measured, and reports the server's own packet counts
  when it has them;
* a ``SessionDriver`` is one participant's signaling: join, the publisher
  offer/answer (the client offers audio + video), the server-offered
  subscriber PC (auto-subscribe to everyone), layer wishes, leave.

The media itself never passes through a driver: the generator carries it
over ``sfu.transport.PeerTransport`` and only hands SDP to the driver.

Participants live in worker processes, the server driver in the parent:
``endpoint()`` is what a worker needs to open sessions (JSON), and
``driver_class(name).attach(endpoint)`` rebuilds a driver there that only
makes sessions.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import aiohttp

from .forwarding import free_port, free_udp_port, wait_healthy
from .peers import Signaling
from .pinning import child_setup

ROOT = Path(__file__).resolve().parent.parent

#: driver name -> "module:class"; a class is imported only when used.
DRIVERS = {
    "pysfu": "benchmarks.drivers:PysfuDriver",
    "janus": "benchmarks.janus:JanusDriver",
}

QUALITIES = ("off", "low", "medium", "high")


class PacketCounts(NamedTuple):
    """What the SFU itself counted since it started (all kinds)."""

    received: int  # RTP packets in from publishers
    forwarded: int  # RTP packets out to subscribers
    lost_in: int = 0  # sequence gaps on the way in (publisher -> SFU)


class SessionDriver(abc.ABC):
    """One participant's signaling with the SFU."""

    #: Called with {rid: enabled} when the SFU asks this publisher to pause or
    #: resume simulcast layers (dynacast). Drivers without it never call it.
    on_publisher_layers: Callable[[dict[str, bool]], None] = staticmethod(lambda layers: None)
    #: Slot subscription asked at join ({"video": n, "audio": m}); drivers
    #: of SFUs without it ignore it.
    slots: Optional[dict] = None
    #: Identity of the dominant speaker as the SFU last announced it; None
    #: until it does (and always for SFUs that do not say).
    dominant: Optional[str] = None
    #: Server events this session could not handle (the first few; the run reports them).
    errors: Sequence[str] = ()

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the signaling connection and join the room."""

    @abc.abstractmethod
    async def publish(self, offer_sdp: str) -> str:
        """Publisher PC: send the client's offer (audio + video), return the answer."""

    @abc.abstractmethod
    async def next_subscriber_offer(self) -> str:
        """Subscriber PC: the next offer the server makes (auto-subscribe to everyone)."""

    @abc.abstractmethod
    async def answer_subscriber(self, answer_sdp: str) -> None:
        """Subscriber PC: the client's answer to the last offer."""

    async def set_layers(self, wanted: dict[str, str], default: str = "high") -> None:
        """Which simulcast layer this subscriber wants of each publisher's camera:
        ``wanted`` maps publisher identities to "low", "medium", "high" or
        "off"; everyone else gets ``default``. Optional: by default a no-op."""

    def stats(self) -> dict[str, int]:
        """Signaling counters of this session (offers, errors, ...)."""
        return {}

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the room and close the connection (never raises)."""


class ServerDriver(abc.ABC):
    """Starts, stops and measures one SFU."""

    name: str = "?"
    #: The process to measure (CPU from /proc/<pid>/stat, RSS); None until started.
    pid: Optional[int] = None

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the server and everything it started (never raises)."""

    @abc.abstractmethod
    def session(self, room: str, identity: str) -> SessionDriver: ...

    async def packet_counts(self) -> Optional[PacketCounts]:
        """The SFU's own packet counters, or None if it does not expose them."""
        return None

    async def load_metrics(self) -> Optional[dict[str, float]]:
        """The SFU's own load and degradation gauges by name (with labels),
        or None if it does not expose them."""
        return None

    @abc.abstractmethod
    def endpoint(self) -> dict[str, Any]:
        """What a worker process needs to open sessions (JSON-able)."""

    @classmethod
    @abc.abstractmethod
    def attach(cls, endpoint: dict[str, Any]) -> "ServerDriver":
        """A driver, in a worker process, that only opens sessions."""

    def settings(self) -> dict[str, Any]:
        """How the server was configured, for the report."""
        return {}

    def log_errors(self) -> list[str]:
        """A few error lines of the server's log, for the report's warnings."""
        return []


def driver_class(name: str) -> type[ServerDriver]:
    try:
        module, cls = DRIVERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown SFU driver {name!r} (known: {', '.join(DRIVERS)})") from None
    return getattr(importlib.import_module(module), cls)


# --- pysfu ---------------------------------------------------------------------------

METRIC = re.compile(r'^pysfu_(packets_in|packets_out|packets_lost_in)(?:_total)?\{kind="\w+"\} (\S+)$', re.M)


PARTICIPANTS = re.compile(r"^pysfu_participants (\S+)$", re.M)
LOAD = re.compile(r"^(pysfu_load(?:_\w+)?(?:\{[^}]*\})?) (\S+)$", re.M)  # the load manager's, if any


class PysfuDriver(ServerDriver):
    """``pysfu serve`` as a subprocess on 127.0.0.1 (uvloop unless told
    otherwise; one process unless ``workers`` > 1, where ``pid`` is the front
    and the workers are its children), open (no API keys), no join rate
    limit, on ``cpus`` when given (benchmarks.pinning), or an already running
    server given by ``url``."""

    name = "pysfu"

    def __init__(self, last_n: Optional[int] = None, uvloop: bool = True,
                 room_capacity: int = 1000, log_path: Optional[Path] = None,
                 url: Optional[str] = None, cwd: Optional[Path] = None, workers: int = 1,
                 single_port: bool = False, cpus: Optional[set[int]] = None,
                 load_shedding: bool = True) -> None:
        self.last_n = last_n
        self.load_shedding = load_shedding
        self.cpus = cpus
        self.workers = workers
        self.single_port = single_port
        self.uvloop = uvloop
        self.room_capacity = room_capacity
        self.log_path = log_path
        self.cwd = cwd or ROOT
        self.url = url
        self.http = url.replace("ws", "http", 1).rsplit("/ws", 1)[0] if url else None
        self._proc: Optional[asyncio.subprocess.Process] = None
        self._http_session: Optional[aiohttp.ClientSession] = None

    # --- server ------------------------------------------------------------

    def argv(self, port: int) -> list[str]:
        script = Path(sys.executable).parent / "pysfu"
        base = [str(script)] if script.exists() else [sys.executable, "-m", "signaling"]
        argv = base + ["serve", "--port", str(port), "--ice-address", "127.0.0.1",
                       "--log-level", "warning", "--joins-per-minute", "0", "--connections-per-address", "0",
                       "--room-capacity", str(self.room_capacity), "--workers", str(self.workers)]
        argv += ["--udp-port", str(free_udp_port(self.workers) if self.single_port else 0)]  # 0: a port per connection
        argv += [] if self.load_shedding else ["--no-load-shedding"]
        return argv + ([] if self.uvloop else ["--no-uvloop"])

    async def start(self) -> None:
        if self.url is not None:
            return  # a server someone else runs (tests): nothing to start
        port = free_port()
        env = dict(os.environ)
        if self.last_n is not None:
            env["PYSFU_SFU__LAST_N"] = str(self.last_n)
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv(port), cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=child_setup(self.cpus),
            )
        finally:
            if self.log_path:
                log.close()
        self.pid = self._proc.pid
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.http = f"http://127.0.0.1:{port}"
        await wait_healthy(self.http, self._proc, 30)

    async def stop(self) -> None:
        if self._http_session is not None:
            await self._http_session.close()
            self._http_session = None
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is None or self._proc.returncode is None

    async def _metrics(self) -> str:
        if self._http_session is None:
            self._http_session = aiohttp.ClientSession()
        async with self._http_session.get(f"{self.http}/metrics",
                                          timeout=aiohttp.ClientTimeout(total=20)) as response:
            return await response.text()

    async def live_participants(self) -> int:
        """Participants the server holds now (0 once everyone has gone)."""
        found = PARTICIPANTS.search(await self._metrics())
        return int(float(found.group(1))) if found else 0

    async def packet_counts(self) -> Optional[PacketCounts]:
        text = await self._metrics()
        totals = {"packets_in": 0.0, "packets_out": 0.0, "packets_lost_in": 0.0}
        for name, value in METRIC.findall(text):
            totals[name] += float(value)
        return PacketCounts(int(totals["packets_in"]), int(totals["packets_out"]),
                            int(totals["packets_lost_in"]))

    async def load_metrics(self) -> Optional[dict[str, float]]:
        """Every pysfu_load_* sample of /metrics (empty: this pysfu has no load manager)."""
        return {name: float(value) for name, value in LOAD.findall(await self._metrics())}

    def settings(self) -> dict[str, Any]:
        return {"loop": "uvloop" if self.uvloop else "asyncio", "workers": self.workers,
                "single_port": self.single_port,
                "last_n": self.last_n if self.last_n is not None else "default (25)"}

    # --- sessions ------------------------------------------------------------

    def endpoint(self) -> dict[str, Any]:
        return {"url": self.url}

    @classmethod
    def attach(cls, endpoint: dict[str, Any]) -> "PysfuDriver":
        return cls(url=endpoint["url"])

    def session(self, room: str, identity: str) -> "PysfuSession":
        if self._http_session is None:
            # one HTTP session (connection pool without a limit) for every participant
            self._http_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return PysfuSession(self.url, room, identity, self._http_session)


class PysfuSession(SessionDriver):
    """pysfu's WebSocket signaling (docs/protocol.md) for one participant."""

    def __init__(self, url: str, room: str, identity: str, http: aiohttp.ClientSession) -> None:
        self.room = room
        self.identity = identity
        self.signaling = Signaling(url, timeout=60.0, http=http)
        self._offers: asyncio.Queue[str] = asyncio.Queue()
        self._names: dict[str, str] = {}  # participant id -> name (our identities)
        self._video_owner: dict[str, str] = {}  # subscribed video track id -> participant id
        self._flowing: set[str] = set()  # video tracks the SFU forwards us (not paused)
        self._sent: dict[str, str] = {}  # track id -> quality last asked for
        self._wanted: dict[str, str] = {}
        self._default = "high"
        self._tasks: set[asyncio.Task] = set()
        self._pump: Optional[asyncio.Task] = None
        self.counters = {"offers": 0, "settings_sent": 0, "errors": 0, "speakers_changed": 0}
        self.ended: Optional[str] = None  # why the server ended the session
        self.slots: Optional[dict] = None  # slot subscription (set before connect)
        self.errors: list[str] = []

    async def connect(self) -> None:
        await self.signaling.connect()
        self._pump = asyncio.ensure_future(self._events())
        join = {"type": "join", "room": self.room, "name": self.identity, "auto_subscribe": True}
        if self.slots:
            join["slots"] = self.slots
        response = await self.signaling.request(join)
        me = response.get("participant", {})
        if "id" in me:
            self._names[me["id"]] = self.identity  # so that we can be the dominant speaker
        for participant in response.get("participants", []):
            self._names[participant["id"]] = participant["name"]

    async def publish(self, offer_sdp: str) -> str:
        response = await self.signaling.request({"type": "publish", "sdp": offer_sdp})
        return response["sdp"]

    async def next_subscriber_offer(self) -> str:
        return await self._offers.get()

    async def answer_subscriber(self, answer_sdp: str) -> None:
        await self.signaling.request({"type": "subscriber_answer", "sdp": answer_sdp})

    async def set_layers(self, wanted: dict[str, str], default: str = "high") -> None:
        self._wanted, self._default = dict(wanted), default
        for track_id in list(self._flowing):
            await self._ask(track_id)

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

    async def close(self) -> None:
        for task in list(self._tasks) + ([self._pump] if self._pump else []):
            task.cancel()
        if not self.signaling.closed.is_set() and self.signaling._ws is not None:
            try:
                await asyncio.wait_for(self.signaling.request({"type": "leave"}), 5)
            except Exception:
                pass
        try:
            await asyncio.wait_for(self.signaling.close(), 5)
        except Exception:
            pass

    # --- events ----------------------------------------------------------------

    async def _events(self) -> None:
        """Handle the server's events in order. One that cannot be handled is
        counted and kept in ``errors`` (the run reports it); the pump goes on:
        a dead pump would silently drop every later wish and dynacast order."""
        while True:
            event = await self.signaling.events.get()
            try:
                self._on_event(event)
            except Exception as error:
                self.counters["errors"] += 1
                if len(self.errors) < 3:
                    self.errors.append(f"{self.identity}: {event.get('type')} event: {error!r}")

    def _on_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "subscriber_offer":
            self.counters["offers"] += 1
            self._video_owner = {t["track_id"]: t["participant_id"]
                                 for t in event.get("tracks", []) if t["kind"] == "video"}
            self._flowing &= set(self._video_owner)
            self._offers.put_nowait(event["sdp"])
        elif kind == "slots_changed":  # what each slot carries now, by track id
            # an empty slot has no participant_id or track_id (docs/protocol.md)
            self._video_owner = {s["track_id"]: s["participant_id"] for s in event["slots"]
                                 if s["kind"] == "video" and s.get("track_id")}
            self._flowing &= set(self._video_owner)
        elif kind == "participant_joined":
            participant = event["participant"]
            self._names[participant["id"]] = participant["name"]
        elif kind == "layer_changed":
            track_id = event["track_id"]
            if event.get("quality") == "off":
                self._flowing.discard(track_id)
            elif track_id in self._video_owner:
                self._flowing.add(track_id)
                self._spawn(self._ask(track_id))
        elif kind == "subscribed_quality_update":
            self.on_publisher_layers({q["rid"]: q["enabled"] for q in event["qualities"] if q.get("rid")})
        elif kind == "speakers_changed":
            self.counters["speakers_changed"] += 1
            for speaker in event.get("speakers", []):
                if speaker.get("dominant"):  # listed only while speaking: keep the last one
                    self.dominant = self._names.get(speaker["participant_id"], self.dominant)
        elif kind == "leave":
            self.ended = event.get("reason", "?")
            self.counters[f"ended_by_server_{self.ended}"] = 1

    async def _ask(self, track_id: str) -> None:
        """Send update_track_settings for a forwarded video track when our wish changed."""
        owner = self._video_owner.get(track_id)
        if owner is None:
            return
        quality = self._wanted.get(self._names.get(owner, ""), self._default)
        if self._sent.get(track_id, "high") == quality:
            return
        self._sent[track_id] = quality
        message = {"type": "update_track_settings", "track_id": track_id}
        if quality == "off":
            message["paused"] = True
        else:
            message["quality"] = quality
        try:
            await self.signaling.request(message)
            self.counters["settings_sent"] += 1
        except Exception:
            self.counters["errors"] += 1

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
