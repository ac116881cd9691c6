"""Structured logs: one JSON object per line, with room and participant ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys

import pytest

from signaling.client import Client
from signaling.logs import ContextFilter, JsonFormatter, TextFormatter

from .conftest import LOOPBACK, ROOT, free_port, free_udp_port, wait_for_http
from .media import ToneAudioTrack
from .waiting import eventually


@pytest.fixture
def captured():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("signaling.session")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield handler, stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


async def test_json_lines_carry_room_and_participant(server, clients, captured):
    handler, stream = captured
    handler.setFormatter(JsonFormatter())
    client = await clients()
    joined = await client.join("logged", "alice")
    await client.leave()
    await client.closed.wait()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line.get("participant") == joined["participant"]["id"]]
    assert [line["message"] for line in mine][:2] == ["joined as " + repr(joined["participant"]["id"]), "left (left)"]
    assert {line["room"] for line in mine} == {"logged"}
    assert {line["level"] for line in mine} == {"info"} and all(line["time"].endswith("Z") for line in mine)


async def test_text_lines_name_the_context(server, clients, captured):
    handler, stream = captured
    handler.setFormatter(TextFormatter())
    client = await clients()
    joined = await client.join("plain", "bob")
    assert f"[room=plain participant={joined['participant']['id']}]" in stream.getvalue()


@pytest.mark.slow
async def test_debug_log_keeps_ice_passwords_out(tmp_path):
    """`--log-level debug` logs whole SDPs (aiortc does): never with the
    ICE password of either side (ufrags are redacted there too, though
    STUN carries them in the clear anyway)."""
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signaling", "serve", "--port", str(port), "--ice-address", "127.0.0.1",
             "--workers", "1", "--udp-port", str(free_udp_port()), "--log-level", "debug"], cwd=ROOT, stderr=log_file)
    try:
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/healthz")
        async with Client(f"ws://127.0.0.1:{port}/ws", ice_addresses=LOOPBACK) as client:
            await client.join("secret", "alice")
            await client.publish([ToneAudioTrack()])
            offer = client.publisher.localDescription.sdp
            answer = client.publisher.remoteDescription.sdp
            await eventually(lambda: "setLocalDescription(answer)" in log_path.read_text())
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)
    text = log_path.read_text()
    passwords = [line.split(":", 1)[1] for sdp in (offer, answer) for line in sdp.splitlines()
                 if line.startswith("a=ice-pwd:")]
    assert len(passwords) == 2
    assert "a=ice-pwd:[redacted]" in text and "a=ice-ufrag:[redacted]" in text  # the SDPs were logged
    assert not [p for p in passwords if p in text]
