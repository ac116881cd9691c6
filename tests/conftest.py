"""Shared fixtures: a pysfu server on loopback, in-process or as a process."""

from __future__ import annotations

from contextlib import asynccontextmanager
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from benchmarks.forwarding import free_udp_port  # noqa: F401 (tests import it from here)
from sfu.config import IceConfig, SfuConfig
from signaling.auth import VideoGrant, create_token
from signaling.app import ROOMS, create_app
from signaling.client import Client
from signaling.config import ServerConfig

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
LOOPBACK = ["127.0.0.1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """A pysfu app served in this process, on a loopback port."""

    def __init__(self, app: web.Application, runner: web.AppRunner, port: int) -> None:
        self.app = app
        self.runner = runner
        self.port = port
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.http = f"http://127.0.0.1:{port}"

    @property
    def rooms(self):
        return self.app[ROOMS]

    def client(self) -> Client:
        return Client(self.url, ice_addresses=LOOPBACK)


#: API keys of the servers that tests start with keys (tokens required).
API_KEY = "test-key"
API_SECRET = "test-secret-" + "x" * 32
KEYS = {API_KEY: API_SECRET, "second-key": "second-secret-" + "y" * 32}


def join_token(identity: str, room: str) -> str:
    """A token that lets ``identity`` join ``room`` of a server started with KEYS."""
    return create_token(API_KEY, API_SECRET, identity, VideoGrant(room=room, roomJoin=True))


#: In-process servers give each peer connection its own UDP socket (on any
#: free port): several servers share the test process, and a fixed port would
#: collide. Server processes (start_server_process) run the default mode, one
#: shared port, on a free one; tests of either mode ask for it.
LOOPBACK_ICE = IceConfig(addresses=LOOPBACK, udp_port=0)


def loopback_config(sfu: dict | None = None, **settings) -> ServerConfig:
    """Loopback-only server settings, plus ``settings`` (``sfu``: SfuConfig fields).

    Load shedding is off unless ``sfu`` turns it on: an in-process server's
    event loop also runs the test's clients, so its load is theirs too."""
    sfu = {"load": {"enabled": False}, **(sfu or {})}
    return ServerConfig(port=0, sfu=SfuConfig(ice=LOOPBACK_ICE, **sfu), **settings)


async def start_local_server(config: ServerConfig) -> LocalServer:
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return LocalServer(app, runner, port)


@pytest.fixture
async def server():
    local = await start_local_server(loopback_config())
    yield local
    await local.runner.cleanup()


@pytest.fixture
async def make_server():
    """Start in-process servers with given settings (see loopback_config)."""
    started: list[LocalServer] = []

    async def make(**settings) -> LocalServer:
        local = await start_local_server(loopback_config(**settings))
        started.append(local)
        return local

    yield make
    for local in started:
        await local.runner.cleanup()


@pytest.fixture
async def keyed(make_server):
    """An in-process server started with KEYS: joins need a token."""
    return await make_server(keys=KEYS)


@asynccontextmanager
async def client_factory(server):
    """A maker of connected clients of ``server``; all closed on exit."""
    made: list[Client] = []

    async def make() -> Client:
        client = server.client()
        await client.connect()
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()


@pytest.fixture
async def clients(server):
    """Make connected clients; all are closed at the end of the test."""
    async with client_factory(server) as make:
        yield make


def wait_for_http(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


class ServerProcess:
    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc = proc
        self.port = port
        self.http = f"http://127.0.0.1:{port}"
        self.url = f"ws://127.0.0.1:{port}/ws"


def start_server_process(extra: list[str] = (), probe_report: Path | None = None) -> ServerProcess:
    port = free_port()
    workers = [] if "--workers" in extra else ["--workers", "1"]  # the single process unless asked
    args = ["serve", "--port", str(port), "--ice-address", "127.0.0.1", "--log-level", "warning", *workers,
            *media_ports(extra), *extra]
    if probe_report is not None:
        command = [sys.executable, str(ROOT / "tests" / "server_probe.py"), str(probe_report), *args]
    else:
        command = [sys.executable, "-m", "signaling", *args]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
    except TimeoutError:
        proc.kill()
        raise
    return ServerProcess(proc, port)


def media_ports(extra: list[str]) -> list[str]:
    """The default mode (one shared UDP port per worker), on free ports, unless ``extra`` chooses."""
    if "--udp-port" in extra or "--udp-port-range" in extra:
        return []
    workers = int(extra[list(extra).index("--workers") + 1]) if "--workers" in extra else 1
    return ["--udp-port", str(free_udp_port(workers))]


def stop_server_process(server: ServerProcess, timeout: float = 10) -> int:
    server.proc.terminate()
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        return server.proc.wait()


@pytest.fixture
def server_process():
    server = start_server_process()
    yield server
    stop_server_process(server)


@pytest.fixture
def dev_server():
    """`pysfu serve --dev`, as `make run` starts it: joins need a token, which
    the demo page fetches from /dev/token."""
    server = start_server_process(["--dev"])
    yield server
    stop_server_process(server)


def pytest_terminal_summary(terminalreporter):
    """How many examples each fuzzed parser ran (tests/fuzz.py), even under -q."""
    fuzz = sys.modules.get("tests.fuzz")
    line = fuzz.summary() if fuzz is not None else ""
    if line:
        terminalreporter.write_line(line)
