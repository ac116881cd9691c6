"""A real redis-server for the cluster tests: loopback, a free port, no
persistence, a temporary directory; stopped (and the directory removed) at
the end.  Skips when redis-server is missing (`make redis-server` installs
Debian's)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from .conftest import free_port


class RedisServer:
    def __init__(self, proc: subprocess.Popen, port: int, directory: str) -> None:
        self.proc = proc
        self.port = port
        self.directory = directory
        self.url = f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(timeout: float = 10) -> RedisServer:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not shutil.which(binary):
        pytest.skip("redis-server is missing: run `make redis-server` (installs Debian's redis-server)")
    port = free_port()
    directory = tempfile.mkdtemp(prefix="pysfu-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory, "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )
    server = RedisServer(proc, port, directory)
    deadline = time.monotonic() + timeout
    while not _answers_ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return server


@pytest.fixture
def redis_server():
    server = start_redis()
    yield server
    server.stop()
