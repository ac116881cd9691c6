"""Recording a real aiortc call into a file (sfu/recorder.py)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import av
import numpy as np
import pytest

from sfu.config import SfuConfig
from signaling.client import ClientError

from .conftest import client_factory, eventually
from .media import PatternVideoTrack, ToneAudioTrack


async def event_of(client, event_type: str, timeout: float = 10) -> dict:
    """The first ``event_type`` event the client got (waiting for it if need be)."""
    for event in client.events:
        if event["type"] == event_type:
            return event
    return await client.wait_event(event_type, timeout)


async def test_ten_seconds_of_a_call_recorded_in_sync(server, clients, tmp_path):
    server.rooms.config.recording_dir = str(tmp_path)
    publisher = await clients()
    await publisher.join("rec", "alice")
    video = PatternVideoTrack(640, 480)
    await publisher.publish([ToneAudioTrack(), video])
    admin = await clients()
    await admin.join("rec", "operator")
    await asyncio.sleep(1.0)

    response = await admin.request({"type": "start_recording", "kind": "tracks"})
    assert response["type"] == "recording_response", response
    started = await event_of(publisher, "recording_started")
    assert started["recording_id"] == response["recording"]["recording_id"]
    sent_before = video.frames_sent
    await asyncio.sleep(10)
    sent = video.frames_sent - sent_before
    assert (await admin.request({"type": "stop_recording"}))["type"] == "ok"
    stopped = await event_of(publisher, "recording_stopped")
    assert stopped["recording_id"] == started["recording_id"]
    path = Path(response["recording"]["path"])
    assert path.parent == tmp_path and path.suffix == ".webm"

    with av.open(str(path)) as container:
        vstream, astream = container.streams.video[0], container.streams.audio[0]
        assert vstream.codec_context.name == "vp8" and astream.codec_context.name == "opus"
        frames = list(container.decode(video=0))
    assert (frames[0].width, frames[0].height) == (640, 480)
    assert len(frames) >= 0.9 * sent, f"{len(frames)} frames decoded of {sent} sent"
    with av.open(str(path)) as container:
        audio = list(container.decode(audio=0))
    assert sum(f.samples for f in audio) / 48000 > 9
    video_start = float(frames[0].pts * frames[0].time_base)
    audio_start = float(audio[0].pts * audio[0].time_base)
    assert abs(video_start - audio_start) < 0.1, (video_start, audio_start)
    assert np.abs(audio[len(audio) // 2].to_ndarray()).max() > 0.1  # the tone, not silence


def test_recording_dir_is_made_absolute_when_read(tmp_path, monkeypatch):
    """Read at start: a later change of working directory does not move it."""
    monkeypatch.chdir(tmp_path)
    assert SfuConfig(recording_dir="rec").recording_dir == str(tmp_path / "rec")
    assert SfuConfig().recording_dir == str(tmp_path / "recordings")


async def test_recordings_are_capped_private_and_pathless_for_participants(make_server, tmp_path):
    """One recording per room and two per server here; the directory is 0700,
    the file 0600, and the room's participants hear of a recording by id only."""
    directory = tmp_path / "private"
    server = await make_server(sfu={"recording_dir": str(directory), "max_recordings_per_room": 1,
                                    "max_recordings": 2})
    async with client_factory(server) as connect:
        publishers = {}
        for room in ("a", "b", "c"):
            publishers[room] = await connect()
            await publishers[room].join(room, f"pub-{room}")
            await publishers[room].publish([ToneAudioTrack(), PatternVideoTrack()] if room == "a" else [ToneAudioTrack()])
        viewer = await connect()
        await viewer.join("a", "viewer")

        first = (await publishers["a"].request({"type": "start_recording"}))["recording"]
        for room, scope in (("a", "room"), ("b", None), ("c", "server")):
            if scope is None:
                await publishers[room].request({"type": "start_recording"})
                continue
            with pytest.raises(ClientError) as caught:
                await publishers[room].request({"type": "start_recording"})
            assert caught.value.code == "too_many_recordings" and scope in str(caught.value)

        path = Path(first["path"])
        assert path.parent == directory
        await eventually(path.exists, timeout=15)
        for room in ("a", "b"):
            assert (await publishers[room].request({"type": "stop_recording"}))["type"] == "ok"
        await eventually(lambda: any(e["type"] == "recording_stopped" for e in viewer.events))
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        seen = [e for e in viewer.events if e["type"].startswith("recording_")]
        assert [e["type"] for e in seen] == ["recording_started", "recording_stopped"]
        assert all(str(directory) not in json.dumps(e) and "path" not in e for e in seen), seen

        # the slots are free again once stopped
        response = await publishers["c"].request({"type": "start_recording"})
        assert response["type"] == "recording_response"
