"""Structured logs: one JSON object per line, with room and participant ids."""

from __future__ import annotations

import io
import json
import logging

import pytest

from signaling.logs import ContextFilter, JsonFormatter, TextFormatter


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
