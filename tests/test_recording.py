"""Recording a real aiortc call into a file (sfu/recorder.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np

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

    response = await admin.request({"type": "start_recording"})
    assert response["type"] == "recording_response", response
    started = await event_of(publisher, "recording_started")
    assert started["recording_id"] == response["recording"]["recording_id"]
    sent_before = video.frames_sent
    await asyncio.sleep(10)
    sent = video.frames_sent - sent_before
    assert (await admin.request({"type": "stop_recording"}))["type"] == "ok"
    stopped = await event_of(publisher, "recording_stopped")
    path = Path(stopped["path"])
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
