"""`pysfu serve` as a process: SIGTERM drains and exits 0; settings errors."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

from signaling.client import Client

from .conftest import LOOPBACK, ROOT, free_port, free_udp_port, start_server_process

GRACE = 3.0


@pytest.mark.slow
async def test_sigterm_sends_leave_and_exits_zero_within_grace():
    server = start_server_process(["--shutdown-grace", str(GRACE)])
    try:
        async with Client(server.url, ice_addresses=LOOPBACK) as a, Client(server.url, ice_addresses=LOOPBACK) as b:
            await a.join("drain", "a")
            await b.join("drain", "b")
            waits = [asyncio.ensure_future(c.wait_event("leave", timeout=GRACE)) for c in (a, b)]
            started = time.monotonic()
            server.proc.terminate()
            leaves = await asyncio.gather(*waits)
            assert [e["reason"] for e in leaves] == ["server_shutdown", "server_shutdown"]
            code = await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, GRACE + 2)
            assert code == 0
            assert time.monotonic() - started < GRACE + 1
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_bad_settings_are_named_and_exit_nonzero():
    result = subprocess.run(
        [sys.executable, "-m", "signaling", "serve", "--port", "70000"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "PYSFU_LIMITS__ROOM_CAPACITY": "lots"},
    )
    assert result.returncode != 0
    assert "port" in result.stderr and "65535" in result.stderr
    assert "limits.room_capacity" in result.stderr and "PYSFU_LIMITS__ROOM_CAPACITY" in result.stderr


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "workers"])
def test_a_taken_udp_port_stops_serve_with_the_reason(workers):
    """Single-port mode is the default: a second server on the same machine
    must say which port is taken and how to choose, not crash or retry."""
    first = free_udp_port(workers)
    taken_port = first + workers - 1  # the last worker's
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", taken_port))
        result = subprocess.run(
            [sys.executable, "-m", "signaling", "serve", "--port", str(free_port()), "--ice-address", "127.0.0.1",
             "--workers", str(workers), "--udp-port", str(first)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, env=os.environ,
        )
    assert result.returncode != 0
    assert f"UDP 127.0.0.1:{taken_port}" in result.stderr and "--udp-port 0" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
