"""Janus VideoRoom as a second benchmark target, next to pysfu.

``JanusServer`` starts the Debian ``janus`` binary (``make janus`` installs
it) with the configuration in benchmarks/janus_conf/: HTTP API on
127.0.0.1 only, VideoRoom and HTTP transport only, no STUN/TURN, ICE on the
loopback interface only. Janus skips interfaces flagged IFF_LOOPBACK when
it gathers candidates, so it is started with a tiny preloaded shim
(janus_conf/unloopback.c, built with gcc per run) that clears that flag:
with ``ice_enforce_list = "lo"`` it then offers exactly one host candidate,
127.0.0.1. ``event_loops`` is Janus's threading setting: 1 (one media loop
thread for every handle) or None (Janus's default: a thread per handle).

``JanusSession`` is one participant over the Janus HTTP API (long-poll
events), with the driver interface of the load generator:

    await s.connect()                       # session, publisher handle, join room
    answer = await s.publish(offer_sdp)     # publisher PC (client offers)
    offer = await s.next_subscriber_offer() # server-offered subscriber PC
    await s.answer_subscriber(answer_sdp)
    await s.close()

The subscriber PC follows every other publisher of the room (Janus
multistream: "join" as subscriber, then "update" with subscribe/unsubscribe
lists, one renegotiation in flight at a time, changes batched meanwhile).
Simulcast publishers offer their rids low to high, as Chromium does
(``"rid_order": "lmh"``; Janus assumes high to low otherwise), and
``set_layers`` wishes become each video stream's Janus ``substream``.
SDPs go over fully gathered (``"trickle": false``); payload types differ
between publisher and subscriber PCs, so read them from the SDP.

``JanusPublisherPeer`` / ``JanusSubscriberPeer`` are benchmarks.peers'
peers speaking to Janus (``python -m benchmarks.peers ... --sfu janus``).
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import aiohttp

from .drivers import ServerDriver, SessionDriver
from .peers import PublisherPeer, SubscriberPeer, emit

log = logging.getLogger("benchmarks.janus")

CONF = Path(__file__).resolve().parent / "janus_conf"
PLUGIN = "janus.plugin.videoroom"
ROOM_EXISTS = 427  # JANUS_VIDEOROOM_ERROR_ROOM_EXISTS
MAX_PUBLISHERS = 200
SUBSTREAMS = {"low": 0, "medium": 1, "high": 2}  # Janus's simulcast substreams
LIB_DIRS = ("/usr/lib/*/janus", "/usr/lib/janus", "/usr/local/lib/janus", "/opt/janus/lib/janus")


class JanusError(RuntimeError):
    """An error answer of Janus or of its VideoRoom plugin."""

    def __init__(self, code: Any, reason: str) -> None:
        super().__init__(f"janus error {code}: {reason}")
        self.code = code
        self.reason = reason


# --- installation ------------------------------------------------------------------


def janus_binary() -> Optional[str]:
    return shutil.which("janus") or next(
        (p for p in ("/usr/bin/janus", "/opt/janus/bin/janus") if os.access(p, os.X_OK)), None)


def janus_lib_dir() -> Optional[Path]:
    """Where the Janus plugins and transports are installed."""
    for pattern in LIB_DIRS:
        for path in sorted(glob.glob(pattern)):
            if (Path(path) / "plugins" / "libjanus_videoroom.so").exists():
                return Path(path)
    return None


def unavailable_reason() -> Optional[str]:
    """Why Janus cannot be benchmarked here (None: it can)."""
    if janus_binary() is None:
        return "janus is not installed (make janus)"
    lib = janus_lib_dir()
    if lib is None:
        return "the Janus VideoRoom plugin was not found"
    if not (lib / "transports" / "libjanus_http.so").exists():
        return "the Janus HTTP transport was not found"
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "no C compiler for the loopback shim (apt-get install gcc)"
    return None


def build_shim(directory: Path) -> Path:
    """Compile unloopback.c into ``directory``; returns the shared object."""
    target = directory / "unloopback.so"
    compiler = shutil.which("gcc") or shutil.which("cc") or "gcc"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(target),
                    str(CONF / "unloopback.c"), "-ldl"], check=True, capture_output=True)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(directory: Path, http_port: int, rtp_ports: tuple[int, int],
                 event_loops: Optional[int], debug_level: int = 3) -> Path:
    """The shipped configuration with this run's ports and folders; returns
    the configs folder. Only VideoRoom and the HTTP transport are loaded."""
    lib = janus_lib_dir()
    if lib is None:
        raise RuntimeError(unavailable_reason() or "janus not found")
    conf, plugins, transports, empty = (directory / name for name in
                                        ("conf", "plugins", "transports", "empty"))
    for folder in (conf, plugins, transports, empty):
        folder.mkdir(parents=True, exist_ok=True)
    (plugins / "libjanus_videoroom.so").symlink_to(lib / "plugins" / "libjanus_videoroom.so")
    (transports / "libjanus_http.so").symlink_to(lib / "transports" / "libjanus_http.so")
    values = {
        "conf": conf, "plugins": plugins, "transports": transports, "empty": empty,
        "debug_level": debug_level, "http_port": http_port,
        "rtp_port_range": f"{rtp_ports[0]}-{rtp_ports[1]}",
        "event_loops_line": f"\tevent_loops = {event_loops}" if event_loops else "",
    }
    for name in ("janus.jcfg", "janus.plugin.videoroom.jcfg", "janus.transport.http.jcfg"):
        template = string.Template((CONF / name).read_text())
        (conf / name).write_text(template.substitute(values))
    return conf


# --- the server --------------------------------------------------------------------


class JanusServer(ServerDriver):
    """One Janus process on loopback; the benchmark's ServerDriver for Janus."""

    name = "janus"  # benchmarks.drivers.DRIVERS; settings() tells event_loops

    def __init__(self, event_loops: Optional[int] = 1, workdir: Optional[Path] = None,
                 preexec_fn: Optional[Callable[[], None]] = None, debug_level: int = 3,
                 start_timeout: float = 20.0) -> None:
        self.event_loops = event_loops
        self._own_workdir = workdir is None
        self.workdir = workdir  # a temporary directory, made by start(), when None
        self._preexec_fn = preexec_fn
        self._debug_level = debug_level
        self._start_timeout = start_timeout
        self.http_port = 0
        self.url = ""
        self.log_path: Optional[Path] = None
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> Optional[int]:
        """The Janus process to measure (all its threads); None when not running."""
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="janus-bench-"))
        self.log_path = self.workdir / "janus.log"
        try:
            self.http_port = free_port()
            self.url = f"http://127.0.0.1:{self.http_port}/janus"
            base = random.randrange(20000, 59000, 1000)  # spread concurrent runs over ranges
            conf = write_config(self.workdir, self.http_port, (base, base + 999), self.event_loops,
                                self._debug_level)
            shim = build_shim(self.workdir)
            env = dict(os.environ, LD_PRELOAD=str(shim))
            with open(self.log_path, "wb") as log_file:
                self.proc = subprocess.Popen(
                    [janus_binary(), "-C", str(conf / "janus.jcfg"), "-F", str(conf), "-o"],
                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                    cwd=self.workdir, preexec_fn=self._preexec_fn,
                )
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"janus exited with code {self.proc.returncode} at start "
                                       f"(log: {self.log_path})")
                try:
                    async with http.get(f"{self.url}/info",
                                        timeout=aiohttp.ClientTimeout(total=2)) as response:
                        info = await response.json(content_type=None)
                        if PLUGIN in info.get("plugins", {}):
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"janus did not answer on {self.url} (log: {self.log_path})")

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Janus's clean shutdown
            deadline = time.monotonic() + 5
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def session(self, room: str, identity: str) -> "JanusSession":
        return JanusSession(self.url, room, identity)

    def endpoint(self) -> dict[str, Any]:
        """What a worker process needs to open sessions (JSON-able)."""
        return {"url": self.url}

    @classmethod
    def attach(cls, endpoint: dict[str, Any]) -> "JanusServer":
        """A driver, in a worker process, that only opens sessions."""
        driver = cls(event_loops=None)
        driver.url = endpoint["url"]
        return driver

    def settings(self) -> dict[str, Any]:
        return {"janus_event_loops": self.event_loops or "default",
                "janus_version": _janus_version()}

    def log_errors(self) -> list[str]:
        """Error lines of Janus's log (its errors are tagged [ERR])."""
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return []
        return [line.strip()[:200] for line in text.splitlines() if "[ERR]" in line][:5]


def _janus_version() -> str:
    try:
        out = subprocess.run([janus_binary() or "janus", "--version"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return next((line.split("(")[-1].rstrip(")") for line in out.splitlines()
                 if line.startswith("Janus version")), "?")


#: The load generator's name for it (benchmarks.drivers.DRIVERS["janus"]).
JanusDriver = JanusServer


# --- one participant ---------------------------------------------------------------


class JanusSession(SessionDriver):
    """One participant of a VideoRoom over the HTTP API."""

    def __init__(self, url: str, room: str, identity: str, timeout: float = 20.0) -> None:
        self.url = url
        self.room = room
        self.identity = identity
        self.timeout = timeout
        self.closed = asyncio.Event()
        self.session_id: Optional[int] = None
        self.publisher_handle: Optional[int] = None
        self.subscriber_handle: Optional[int] = None
        self.feed_id: Any = None  # our own publisher id in the room
        self.feeds: dict[Any, str] = {}  # other publishers in the room: id -> display
        self.subscribed: set = set()
        self.video_mids: dict[str, Any] = {}  # subscriber PC video mid -> feed id
        self._wanted: dict[str, str] = {}  # display -> layer wish (set_layers)
        self._default = "high"
        self._layer_sent: dict[str, str] = {}  # mid -> wish Janus has (its default: high)
        self._configuring: Optional[asyncio.Task] = None
        self._http: Optional[aiohttp.ClientSession] = None
        self._poller: Optional[asyncio.Task] = None
        self._follower: Optional[asyncio.Task] = None
        self._pending: dict[str, asyncio.Future] = {}
        self._offers: asyncio.Queue = asyncio.Queue()
        self._changed = asyncio.Event()
        self._answered = asyncio.Event()
        self._answered.set()  # no subscriber offer waiting for its answer
        self._error: Optional[BaseException] = None
        self.offers = 0  # subscriber offers received
        self.layer_requests = 0
        self.layer_errors = 0

    # --- SessionDriver ---------------------------------------------------------

    async def connect(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout + 40))
        created = await self._post(self.url, {"janus": "create"})
        self.session_id = created["data"]["id"]
        self._poller = asyncio.ensure_future(self._poll())
        self.publisher_handle = await self._attach()
        await self._ensure_room()
        data, _ = await self.message(self.publisher_handle, {
            "request": "join", "ptype": "publisher", "room": self.room, "display": self.identity})
        if data.get("videoroom") != "joined":
            raise JanusError("join", f"unexpected answer {data}")
        self.feed_id = data["id"]
        self._add_feeds(data.get("publishers", []))
        self._follower = asyncio.ensure_future(self._follow())

    async def publish(self, offer_sdp: str) -> str:
        # rid_order: our simulcast lists its rids low to high, as Chromium does
        # (a=simulcast:send q;h;f); Janus assumes high to low unless told
        data, jsep = await self.message(self.publisher_handle, {"request": "publish"},
                                        {"type": "offer", "sdp": offer_sdp, "trickle": False,
                                         "rid_order": "lmh"})
        if data.get("configured") != "ok" or not jsep:
            raise JanusError("publish", f"unexpected answer {data}")
        return jsep["sdp"]

    async def next_subscriber_offer(self) -> str:
        """The next offer of the subscriber PC (first one once another publisher exists)."""
        getter = asyncio.ensure_future(self._offers.get())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if not getter.done():
            getter.cancel()
            raise ConnectionError(f"janus session closed: {self._error}")
        return getter.result()

    async def answer_subscriber(self, answer_sdp: str) -> None:
        data, _ = await self.message(self.subscriber_handle, {"request": "start"},
                                     {"type": "answer", "sdp": answer_sdp, "trickle": False})
        if data.get("started") != "ok":
            raise JanusError("start", f"unexpected answer {data}")
        self._answered.set()
        self._changed.set()  # changes batched while the offer was out
        if self._configuring is None or self._configuring.done():  # wishes for new streams
            self._configuring = asyncio.ensure_future(self._configure_layers())

    async def set_layers(self, wanted: dict[str, str], default: str = "high") -> None:
        """Simulcast layer wishes (by publisher display name) as Janus substreams
        of the subscriber PC's video streams; "off" stops sending that stream."""
        self._wanted, self._default = dict(wanted), default
        await self._configure_layers()

    async def _configure_layers(self) -> None:
        streams = []
        for mid, feed in list(self.video_mids.items()):
            quality = self._wanted.get(self.feeds.get(feed, ""), self._default)
            if self._layer_sent.get(mid, "high") == quality:
                continue
            self._layer_sent[mid] = quality
            stream: dict[str, Any] = {"mid": mid, "send": quality != "off"}
            if quality != "off":
                stream["substream"] = SUBSTREAMS[quality]
            streams.append(stream)
        if not streams:
            return
        try:
            await self.message(self.subscriber_handle, {"request": "configure", "streams": streams})
            self.layer_requests += 1
        except (JanusError, ConnectionError, asyncio.TimeoutError, aiohttp.ClientError):
            self.layer_errors += 1

    def stats(self) -> dict[str, int]:
        return {"offers": self.offers, "feeds": len(self.feeds), "subscribed": len(self.subscribed),
                "settings_sent": self.layer_requests, "errors": int(self._error is not None)
                + self.layer_errors}

    async def close(self) -> None:
        for task in (self._follower, self._poller, self._configuring):
            if task is not None:
                task.cancel()
        if self._http is not None and self.session_id is not None and not self.closed.is_set():
            try:
                await asyncio.wait_for(self._post(f"{self.url}/{self.session_id}",
                                                  {"janus": "destroy"}), 3)
            except (Exception, asyncio.TimeoutError):
                pass
        self.closed.set()
        if self._http is not None:
            await self._http.close()

    # --- Janus API -------------------------------------------------------------

    async def message(self, handle: int, body: dict, jsep: Optional[dict] = None,
                      timeout: Optional[float] = None) -> tuple[dict, Optional[dict]]:
        """A plugin request; returns (plugin data, jsep) of its answer, synchronous
        ("success") or asynchronous ("ack", then an event with the transaction)."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        transaction = request["transaction"] = secrets.token_hex(8)
        future = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        try:
            response = await self._post(f"{self.url}/{self.session_id}/{handle}", request)
            if response.get("janus") == "success":
                event = response
            else:
                event = await asyncio.wait_for(future, timeout or self.timeout)
        finally:
            self._pending.pop(transaction, None)
        data = event.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise JanusError(data["error_code"], data.get("error", ""))
        return data, event.get("jsep")

    async def _post(self, url: str, request: dict) -> dict:
        request.setdefault("transaction", secrets.token_hex(8))
        async with self._http.post(url, json=request) as response:
            answer = await response.json(content_type=None)
        if answer.get("janus") == "error":
            error = answer.get("error", {})
            raise JanusError(error.get("code"), error.get("reason", ""))
        return answer

    async def _attach(self) -> int:
        answer = await self._post(f"{self.url}/{self.session_id}",
                                  {"janus": "attach", "plugin": PLUGIN})
        return answer["data"]["id"]

    async def _ensure_room(self) -> None:
        data, _ = await self.message(self.publisher_handle, {"request": "exists", "room": self.room})
        if data.get("exists"):
            return
        try:
            await self.message(self.publisher_handle, {
                "request": "create", "room": self.room, "publishers": MAX_PUBLISHERS,
                "audiocodec": "opus", "videocodec": "vp8", "notify_joining": False,
                "permanent": False})
        except JanusError as exc:
            if exc.code != ROOM_EXISTS:  # another participant created it first
                raise

    async def _poll(self) -> None:
        """Janus's long poll: every event of the session, several per request."""
        url = f"{self.url}/{self.session_id}"
        try:
            while True:
                async with self._http.get(url, params={"maxev": "20"}) as response:
                    events = await response.json(content_type=None)
                for event in events if isinstance(events, list) else [events]:
                    self._dispatch(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # session gone, Janus stopped
            self._error = exc
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"janus long poll failed: {exc}"))
            self.closed.set()

    def _dispatch(self, event: dict) -> None:
        kind = event.get("janus")
        if kind == "keepalive":
            return
        future = self._pending.get(event.get("transaction"))
        if kind == "event" and future is not None and not future.done():
            future.set_result(event)
            return
        if kind in ("timeout", "detached") and event.get("sender") in (None, self.publisher_handle):
            self._error = RuntimeError(f"janus: {kind}")
            self.closed.set()
            return
        if kind != "event":
            return  # webrtcup, media, slowlink, hangup: informational
        data = event.get("plugindata", {}).get("data", {})
        sender = event.get("sender")
        if sender == self.publisher_handle:
            self._add_feeds(data.get("publishers", []))
            for key in ("unpublished", "leaving"):
                if key in data and data[key] != "ok":
                    self._remove_feed(data[key])
        elif sender == self.subscriber_handle and (event.get("jsep") or {}).get("type") == "offer":
            self._learn_streams(data)
            # Janus renegotiates on its own (e.g., a publisher left)
            self._answered.clear()
            self.offers += 1
            self._offers.put_nowait(event["jsep"]["sdp"])

    def _add_feeds(self, publishers: list[dict]) -> None:
        for publisher in publishers:
            if publisher.get("id") != self.feed_id and not publisher.get("dummy"):
                self.feeds[publisher["id"]] = publisher.get("display", "")
                self._changed.set()

    def _learn_streams(self, data: dict) -> None:
        """The subscriber PC's streams from a join/update answer (all of them)."""
        if "streams" in data:
            self.video_mids = {s["mid"]: s["feed_id"] for s in data["streams"]
                               if s.get("type") == "video" and s.get("active", True)
                               and "feed_id" in s}

    def _remove_feed(self, feed: Any) -> None:
        if self.feeds.pop(feed, None) is not None:
            self.subscribed.discard(feed)  # Janus drops the streams itself
            self.video_mids = {m: f for m, f in self.video_mids.items() if f != feed}
            self._changed.set()

    async def _follow(self) -> None:
        """Keep the subscriber PC on every other publisher: one offer in flight,
        changes arriving meanwhile batched into the next update."""
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                await self._answered.wait()
                add = [f for f in self.feeds if f not in self.subscribed]
                if not add:
                    continue
                streams = [{"feed": feed} for feed in add]
                if self.subscriber_handle is None:
                    self.subscriber_handle = await self._attach()
                    data, jsep = await self.message(self.subscriber_handle, {
                        "request": "join", "ptype": "subscriber", "room": self.room,
                        "streams": streams, "use_msid": False})
                else:
                    data, jsep = await self.message(self.subscriber_handle, {
                        "request": "update", "subscribe": streams})
                self.subscribed.update(add)
                self._learn_streams(data)
                if jsep and jsep.get("type") == "offer":
                    self._answered.clear()
                    self.offers += 1
                    self._offers.put_nowait(jsep["sdp"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: following the room's publishers failed: %s", self.identity, exc)
            self._error = exc
            self.closed.set()


# --- benchmarks.peers' peers against Janus -----------------------------------------


class JanusPublisherPeer(PublisherPeer):
    """PublisherPeer publishing into a Janus VideoRoom (url: the Janus HTTP API)."""

    def __init__(self, url: str, room: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(url, room, *args, **kwargs)
        self.signaling = JanusSession(url, room, self.name)

    async def _join(self) -> None:
        await self.signaling.connect()  # joins the room as a publisher

    async def _negotiate(self, offer: str, mids: dict[str, str]) -> str:
        return await self.signaling.publish(offer)


class JanusSubscriberPeer(SubscriberPeer):
    """SubscriberPeer receiving every publisher of a Janus VideoRoom."""

    def __init__(self, url: str, room: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(url, room, *args, **kwargs)
        self.signaling = JanusSession(url, room, self.name)

    async def start(self) -> None:
        self.started = time.monotonic()
        await self.signaling.connect()
        self._tasks.append(asyncio.ensure_future(self._answer_offers()))
        self._tasks.append(asyncio.ensure_future(self._receiver_reports()))

    async def _answer_offers(self) -> None:
        while True:
            offer = await self.signaling.next_subscriber_offer()
            self.offers += 1
            try:
                answer = await self.transport.answer(offer)
                await self.signaling.answer_subscriber(answer)
            except Exception as exc:  # reported, and the run fails on no media
                emit("error", message=f"subscriber offer not answered: {type(exc).__name__}: {exc}")
