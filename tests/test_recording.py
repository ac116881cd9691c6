"""Recording a real aiortc call into a file (sfu/recorder.py)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

import av
import numpy as np
import pytest

from sfu.config import SfuConfig
from signaling.client import ClientError

from .conftest import KEYS, client_factory
from .media import PatternVideoTrack, ToneAudioTrack
from .waiting import eventually

pytestmark = pytest.mark.slow  # recordings of real calls


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
        early = await connect()  # a late joiner learns that the room is being recorded
        assert (await early.join("a", "early"))["recordings"] == [first["recording_id"]]
        for room in ("a", "b"):
            assert (await publishers[room].request({"type": "stop_recording"}))["type"] == "ok"
        await eventually(lambda: any(e["type"] == "recording_stopped" for e in viewer.events))
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        late = await connect()  # a late joiner learns that the room is no longer being recorded
        assert (await late.join("a", "late"))["recordings"] == []
        seen = [e for e in viewer.events if e["type"].startswith("recording_")]
        assert [e["type"] for e in seen] == ["recording_started", "recording_stopped"]
        assert all(str(directory) not in json.dumps(e) and "path" not in e for e in seen), seen

        # the slots are free again once stopped
        response = await publishers["c"].request({"type": "start_recording"})
        assert response["type"] == "recording_response"


# --- operating recordings: the admin API, the webhook, retention ----------------------


async def test_audio_recording_listed_downloaded_and_deleted_through_the_admin_api(make_server, tmp_path):
    """Kind "audio": every voice mixed into one .m4a; once finished it is in
    the room's list (even after the room is gone), downloadable, deletable,
    and the recording_finished webhook gives its size and duration."""
    import io

    import aiohttp

    from .test_admin import ADMIN, Api
    from .test_composite import tone_levels
    from .webhook_receiver import Receiver

    async with Receiver() as receiver, aiohttp.ClientSession() as http:
        server = await make_server(keys=KEYS, sfu={"recording_dir": str(tmp_path)},
                                   webhooks={"urls": [receiver.url]})
        api = Api(server, http)
        speakers = [await api.client("minutes", name) for name in ("ana", "ben")]
        for speaker, frequency in zip(speakers, (440, 660)):
            await speaker.publish([ToneAudioTrack(frequency)])
        await eventually(lambda: all(t.stream is not None for t in server.rooms.rooms["minutes"].tracks()))
        status, started = await api.call("POST", "/api/rooms/minutes/recording", {"kind": "audio"})
        assert status == 201 and started["kind"] == "audio" and started["path"].endswith(".m4a"), started
        begun = asyncio.get_running_loop().time()
        status, listed = await api.call("GET", "/api/rooms/minutes/recordings")
        assert (status, listed["recordings"], listed["in_progress"]) == (200, [], [started["id"]])
        status, data = await api.call("DELETE", f"/api/rooms/minutes/recordings/{started['id']}")
        assert (status, data["error"]["code"]) == (409, "recording_in_progress")
        await asyncio.sleep(6)
        wall = asyncio.get_running_loop().time() - begun
        status, _ = await api.call("DELETE", "/api/rooms/minutes/recording")
        assert status == 200
        for speaker in speakers:
            await speaker.leave()
            await speaker.close()
        await eventually(lambda: "minutes" not in server.rooms.rooms)

        finished = await eventually(
            lambda: [e for e in receiver.events() if e["event"] == "recording_finished"], timeout=10)
        hooked = finished[0]["recording"]
        assert hooked["id"] == started["id"] and hooked["kind"] == "audio"
        assert hooked["size"] == os.path.getsize(started["path"]) and abs(hooked["duration"] - wall) < 1.0, hooked

        status, listed = await api.call("GET", "/api/rooms/minutes/recordings")
        assert status == 200 and [r["id"] for r in listed["recordings"]] == [started["id"]], listed
        assert listed["recordings"][0]["size"] == hooked["size"] and "path" not in listed["recordings"][0]
        url = f"{server.http}/api/rooms/minutes/recordings/{started['id']}"
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with http.get(url, headers=headers) as response:
            assert response.status == 200
            data = await response.read()
        assert data == Path(started["path"]).read_bytes()
        async with http.get(url, headers=headers, params={"file": "../../etc/passwd"}) as response:
            assert response.status == 404  # only the recording's own files
        with av.open(io.BytesIO(data)) as container:
            assert not container.streams.video and container.streams.audio[0].codec_context.name == "aac"
            samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        assert min(tone_levels(samples[48000 * 2:].astype(np.float64), 48000, (440, 660)).values()) > 20

        # another room's admin path cannot reach it
        status, data = await api.call("GET", "/api/rooms/other/recordings")
        assert status == 200 and data["recordings"] == []
        async with http.get(f"{server.http}/api/rooms/other/recordings/{started['id']}", headers=headers) as response:
            assert response.status == 404
        status, _ = await api.call("DELETE", f"/api/rooms/minutes/recordings/{started['id']}")
        assert status == 204 and not os.path.exists(started["path"])
        status, data = await api.call("DELETE", f"/api/rooms/minutes/recordings/{started['id']}")
        assert (status, data["error"]["code"]) == (404, "recording_not_found")


async def test_recordings_older_than_the_retention_are_deleted_at_start(make_server, tmp_path):
    from sfu import recording_files

    now = time.time()
    for name, age_days in (("old", 3), ("recent", 0.5)):
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(b"x")
        ended = now - age_days * 86400
        recording_files.write_sidecar(path, {"id": name, "room": "r", "kind": "composite",
                                             "started_at": ended, "finished_at": ended})
    await make_server(sfu={"recording_dir": str(tmp_path), "recording_retention_days": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recent.mp4", "recent.mp4.json"]
    assert [r["id"] for r in recording_files.of_room(tmp_path, "r")] == ["recent"]


# --- a Chromium publisher: simulcast at its best layer, a track published later ------

SIMULCAST_CAMERA_JS = """
async ({room}) => {
  const canvas = document.createElement("canvas");
  canvas.width = 1280;
  canvas.height = 720;
  const ctx = canvas.getContext("2d");
  let n = 0;
  setInterval(() => {
    ctx.fillStyle = "#3060c0";
    ctx.fillRect(0, 0, 1280, 720);
    ctx.fillStyle = "#fff";
    ctx.fillRect((n * 16) % 1200, 300, 80, 80);
    n += 1;
  }, 66);
  const { PysfuClient } = await import("/pysfu.js");
  const client = new PysfuClient();
  window.testClient = client;
  await client.join(room, "cam", {autoSubscribe: false});
  const infos = await client.publish(canvas.captureStream(15));
  window.shareLater = async () => {
    const screen = document.createElement("canvas");
    screen.width = 960;
    screen.height = 540;
    const sctx = screen.getContext("2d");
    setInterval(() => { sctx.fillStyle = `hsl(${(n * 7) % 360}, 60%, 50%)`; sctx.fillRect(0, 0, 960, 540); }, 66);
    const infos = await client.publish(screen.captureStream(15), {source: "screen_share", simulcast: false});
    return infos.map((i) => i.id);
  };
  return infos.map((i) => i.id);
}
"""


@pytest.mark.browser
async def test_track_recording_takes_the_best_simulcast_layer_and_later_tracks(make_server, tmp_path):
    """A 1280x720 simulcast camera is recorded at 1280 wide (not its 320 layer),
    and a screen share published after the start gets a file of its own."""
    from .browser import chromium

    server = await make_server(sfu={"recording_dir": str(tmp_path / "recordings")})
    async with chromium(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto(f"{server.http}/")
        [camera_id] = await page.evaluate(SIMULCAST_CAMERA_JS, {"room": "tracks"})
        room = server.rooms.rooms["tracks"]
        camera = room.find_track(camera_id)
        assert camera.simulcast and len(camera.layers) == 3
        await eventually(lambda: all(s is not None and s.flowing(time.monotonic()) for s in camera.layers),
                         timeout=30, message="every simulcast layer flowing")
        recording = room.recordings.start(room.tracks(), "tracks")
        await asyncio.sleep(2)
        [share_id] = await page.evaluate("window.shareLater()")
        await asyncio.sleep(6)
        await room.recordings.stop()

    assert share_id in recording.track_ids and len(recording.later) == 1
    with av.open(str(recording.path)) as container:
        widths = [f.width for f in container.decode(video=0)]
    assert len(widths) > 50 and set(widths) == {1280}, (len(widths), set(widths))
    later = recording.later[0].path
    assert later.name == f"{recording.path.stem}-{share_id}.webm"
    assert stat.S_IMODE(os.stat(later).st_mode) == 0o600
    with av.open(str(later)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) > 20 and frames[0].width == 960
    assert sorted(recording.info()["files"]) == sorted([recording.path.name, later.name])
