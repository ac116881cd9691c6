"""Composite recording (sfu/composite.py, sfu/compositor.py): the room as one MP4."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from pathlib import Path

import av
import numpy as np
import pytest

from aiortc import VideoStreamTrack
from av import VideoFrame

from sfu.compositor import BACKGROUND, PLACEHOLDER, Compositor, Mixer, fit, speaker_layout
from sfu.layer_reader import LayerReader

from .media import PatternVideoTrack, ToneAudioTrack
from .processes import child_pids
from .waiting import eventually, eventually_async

pytestmark = pytest.mark.slow  # recorder processes encoding real calls


def tone_levels(samples: np.ndarray, rate: int, frequencies) -> dict:
    """Spectrum magnitude at each frequency, relative to the median of the spectrum."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    bins = np.fft.rfftfreq(len(samples), 1 / rate)
    floor = np.median(spectrum) + 1e-9
    return {f: spectrum[np.abs(bins - f) < 5].max() / floor for f in frequencies}


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        return np.concatenate(frames), stream.rate


# --- the pure parts -----------------------------------------------------------------


@pytest.mark.parametrize("strip_tiles, stage, strip", [
    (0, (0, 0, 1280, 720), []),
    (1, (0, 0, 1280, 576), [(512, 576, 256, 144)]),
    (3, (0, 0, 1280, 576), [(256, 576, 256, 144), (512, 576, 256, 144), (768, 576, 256, 144)]),
    (9, (0, 0, 1280, 576), [(i * 256, 576, 256, 144) for i in range(5)]),  # as many as fit
], ids=["alone", "one-other", "three-others", "more-than-fit"])
def test_speaker_layout(strip_tiles, stage, strip):
    assert speaker_layout(1280, 720, strip_tiles) == (stage, strip)


@pytest.mark.parametrize("size, rect, fitted", [
    ((1280, 720), (0, 0, 1280, 576), (128, 0, 1024, 576)),  # pillarboxed
    ((640, 480), (0, 0, 256, 144), (32, 0, 192, 144)),
    ((1920, 200), (0, 0, 640, 360), (0, 147, 640, 66)),  # letterboxed, even sizes
], ids=["16:9-on-stage", "4:3-thumbnail", "wide"])
def test_fit_keeps_the_aspect(size, rect, fitted):
    assert fit(*size, rect) == fitted


def test_mixer_sums_voices_at_their_positions_and_clips():
    mixer = Mixer()
    mixer.add(0, np.full(4, 20000, np.int32))
    mixer.add(2, np.full(4, 20000, np.int32))  # overlaps the first by two samples
    mixer.add(10, np.full(2, -30000, np.int32))
    assert mixer.take(6).tolist() == [20000, 20000, 32767, 32767, 20000, 20000]
    mixer.add(4, np.full(4, 1000, np.int32))  # late: only what is not out yet counts
    assert mixer.take(12).tolist() == [1000, 1000, 0, 0, -30000, -30000]
    assert mixer.take(14).tolist() == [0, 0]  # nobody spoke: silence


def test_a_layout_shows_from_its_instant_however_late_the_recorder_reads_it():
    """A recorder behind the clock reads a mute seconds after it happened:
    the frames before that instant must still show the layout of then."""
    compositor = Compositor("unused.mp4", origin=100.0)
    compositor.handle(("layout", {"stage": {"key": None, "name": ""}, "strip": []}, 102.0))
    compositor.handle(("layout", {"stage": None, "strip": []}, 105.0))
    stage = speaker_layout(1280, 720, 0)[0]
    x, y = stage[0] + stage[2] // 2, stage[1] + stage[3] // 2

    def stage_colour(instant: float) -> tuple:
        return tuple(compositor.compose(instant)[y, x])

    assert stage_colour(101.9) == tuple(BACKGROUND)  # nothing on stage yet
    assert stage_colour(102.0) == tuple(PLACEHOLDER)
    assert stage_colour(104.9) == tuple(PLACEHOLDER)
    assert stage_colour(105.0) == tuple(BACKGROUND)


async def test_two_aiortc_peers_recorded_as_one_mp4_with_both_voices(server, clients, tmp_path):
    server.rooms.config.recording_dir = str(tmp_path)
    alice = await clients()
    await alice.join("comp", "alice")
    await alice.publish([ToneAudioTrack(440), PatternVideoTrack(640, 480)])
    bob = await clients()
    await bob.join("comp", "bob")
    await bob.publish([ToneAudioTrack(660), PatternVideoTrack(320, 240)])
    await asyncio.sleep(1.0)

    response = await alice.request({"type": "start_recording", "kind": "composite"})
    path = Path(response["recording"]["path"])
    started = time.monotonic()
    await asyncio.sleep(8)
    room = server.rooms.rooms["comp"]
    [recording] = room.recordings.active.values()
    wall = time.monotonic() - started  # what was asked for: stopping finishes the file
    assert (await alice.request({"type": "stop_recording"}))["type"] == "ok"
    # nothing left behind: the process is gone, no track has a reader of it
    assert not running(recording.pid)
    assert not any(isinstance(d, LayerReader) for t in room.tracks() for d in t.downtracks)
    assert not any(isinstance(d, LayerReader) for t in room.tracks() for s in t.layers for d in s.readers)
    assert path.suffix == ".mp4" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert (container.streams.video[0].width, container.streams.video[0].height) == (1280, 720)
        duration = container.duration / 1e6
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert abs(duration - wall) < 1.0, (duration, wall)
    samples, rate = read_audio(path)
    levels = tone_levels(samples[rate * 3:], rate, (440, 660))
    assert min(levels.values()) > 20, levels
    last = frames[-1]
    stage, strip = speaker_layout(1280, 720, 1)
    assert last[stage[1] + stage[3] // 2, stage[0] + stage[2] // 2].std() >= 0  # placeholder for now


class SolidVideoTrack(VideoStreamTrack):
    """A camera of one colour (with a small moving square, so frames differ)."""

    def __init__(self, colour: tuple[int, int, int]) -> None:
        super().__init__()
        self.picture = np.empty((180, 320, 3), np.uint8)
        self.picture[:] = colour
        self.count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        picture = self.picture.copy()
        x = (self.count * 4) % 300
        picture[150:170, x:x + 20] = 255
        self.count += 1
        frame = VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


async def test_joining_muting_and_leaving_show_in_the_recording_as_they_happen(make_server, tmp_path):
    server = await make_server(sfu={"recording_dir": str(tmp_path)})
    people, videos = {}, {}
    for name in ("ana", "ben"):
        people[name] = server.client()
        await people[name].connect()
        await people[name].join("life", name)
        [videos[name]] = await people[name].publish([SolidVideoTrack(COLOURS[name])])
    room = server.rooms.rooms["life"]
    await eventually(lambda: all(t.stream is not None and t.stream.flowing(time.monotonic()) for t in room.tracks()),
                     timeout=20)
    recording = room.recordings.start(room.tracks())
    started = time.monotonic()
    samples = []  # (file instant, people on screen then, as seen)

    async def phase(expected: list[str]) -> None:
        await asyncio.sleep(4)  # the layout follows within a second, a new camera at its keyframe
        samples.append((time.monotonic() - started - 1.0, expected))

    try:
        await phase(["ana", "ben"])
        people["cho"] = server.client()
        await people["cho"].connect()
        await people["cho"].join("life", "cho")
        await people["cho"].publish([SolidVideoTrack(COLOURS["cho"])])
        await phase(["ana", "ben", "cho"])
        await people["ben"].request({"type": "mute", "track_id": videos["ben"]["id"], "muted": True})
        await phase(["ana", "cho", "placeholder"])
        await people["ana"].leave()
        await phase(["cho", "placeholder"])
        await room.recordings.stop()
    finally:
        for client in people.values():
            await client.close()

    with av.open(str(recording.path)) as container:
        stream = container.streams.video[0]
        frames = [(float(f.pts * stream.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    palette = {**COLOURS, "placeholder": PLACEHOLDER}
    for instant, expected in samples:
        frame = frame_at(frames, instant)
        stage, strip = speaker_layout(1280, 720, len(expected) - 1)
        seen = [colour_name(region_colour(frame, fit(16, 9, rect)), palette) for rect in [stage, *strip]]
        assert sorted(seen) == expected, (instant, seen, expected)


async def test_composite_recording_from_a_server_started_as_pysfu_serve(tmp_path, monkeypatch):
    """As deployed (``python -m signaling serve``): the recorder process is
    spawned beside the server (multiprocessing skips a ``__main__`` module
    named ``pkg.__main__``) and the file plays."""
    from signaling.client import Client

    from .conftest import LOOPBACK, start_server_process, stop_server_process

    monkeypatch.setenv("PYSFU_SFU__RECORDING_DIR", str(tmp_path))
    server = start_server_process()
    try:
        async with Client(server.url, ice_addresses=LOOPBACK) as alice:
            await alice.join("served", "alice")
            await alice.publish([ToneAudioTrack(440), PatternVideoTrack(320, 240)])
            await asyncio.sleep(1)
            response = await alice.request({"type": "start_recording"})
            assert response["recording"]["kind"] == "composite"
            await asyncio.sleep(4)
            assert (await alice.request({"type": "stop_recording"}))["type"] == "ok"
        assert server.proc.poll() is None, "the server died"
        with av.open(response["recording"]["path"]) as container:
            assert container.duration / 1e6 > 3 and len(list(container.decode(video=0))) > 40
    finally:
        stop_server_process(server)


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_a_killed_server_leaves_a_finished_composite_file(tmp_path, monkeypatch):
    """The SFU's process killed outright mid-recording: the recorder process
    notices, finishes the file where it is (it plays) and exits."""
    from signaling.client import Client

    from .conftest import LOOPBACK, start_server_process

    monkeypatch.setenv("PYSFU_SFU__RECORDING_DIR", str(tmp_path))
    server = start_server_process()
    try:
        async with Client(server.url, ice_addresses=LOOPBACK) as alice:
            await alice.join("killed", "alice")
            await alice.publish([ToneAudioTrack(440), PatternVideoTrack(320, 240)])
            await asyncio.sleep(1)
            path = (await alice.request({"type": "start_recording"}))["recording"]["path"]
            await eventually(lambda: os.path.exists(path), timeout=30)
            recorders = child_pids(server.proc.pid)
            assert recorders, "no recorder process"
            await asyncio.sleep(4)
            server.proc.kill()
            server.proc.wait(10)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    await eventually(lambda: not any(map(running, recorders)), timeout=30, message="the recorder process exits")
    with av.open(path) as container:
        assert container.duration / 1e6 > 2 and len(list(container.decode(video=0))) > 20


async def test_a_stalled_recorder_process_never_holds_up_forwarding(server, clients, tmp_path):
    """The recorder process frozen (SIGSTOP) for longer than its queue holds:
    the subscriber keeps getting video, the recording drops batches, and once
    the process runs again the file is finished and plays."""
    server.rooms.config.recording_dir = str(tmp_path)
    alice = await clients()
    await alice.join("stall", "alice")
    await alice.publish([ToneAudioTrack(), PatternVideoTrack(320, 240)])
    bob = await clients()
    await bob.join("stall", "bob")
    video = next(t for t in await bob.wait_tracks(2, timeout=20) if t.track.kind == "video")
    received = 0

    async def count_frames() -> None:
        nonlocal received
        while True:
            await video.track.recv()
            received += 1

    counter = asyncio.ensure_future(count_frames())
    room = server.rooms.rooms["stall"]
    recording = room.recordings.start(room.tracks(), "composite")
    await eventually(recording.path.exists, timeout=30, message="the recorder process writing")
    camera = next(t for t in room.tracks() if t.kind == "video").layers[0]
    os.kill(recording.pid, signal.SIGSTOP)
    try:
        before = received
        await eventually(lambda: recording.batches_dropped > 10, timeout=30, message="batches dropped")
        assert received - before > 60, f"only {received - before} frames while the recorder was stalled"
    finally:
        asked, keyframes = camera.keyframes.requested, camera.keyframes_received
        os.kill(recording.pid, signal.SIGCONT)
        counter.cancel()
    # what was lost broke the video: the recorder asks for a keyframe, which repairs it
    # (waited for, not slept on: on a loaded machine the catch-up takes seconds)
    await eventually(lambda: camera.keyframes.requested > asked, timeout=30,
                     message="the recorder never asked for a keyframe after the stall")
    await eventually(lambda: camera.keyframes_received > keyframes, timeout=30,
                     message="no keyframe came after the stall")
    await asyncio.sleep(2)  # two seconds of moving picture after the keyframe
    await asyncio.wait_for(room.recordings.stop(), 60)
    assert recording.error is None
    with av.open(str(recording.path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    stage = speaker_layout(1280, 720, 1)[0]
    x, y, w, h = fit(320, 240, stage)
    moved = np.abs(frames[-1][y:y + h, x:x + w].astype(int) - frames[-16][y:y + h, x:x + w]).mean()
    assert moved > 1, "the stage froze after the stall"


# --- a Chromium meeting recorded as composite ---------------------------------------

ROOM = "composite"
COLOURS = {"ana": (220, 40, 40), "ben": (40, 200, 60), "cho": (40, 60, 220)}
TONES = {"ana": 440, "ben": 660, "cho": 880}
SCREEN = (230, 0, 230)
CHROMIUM_EXTRA = ["--autoplay-policy=no-user-gesture-required", "--disable-background-timer-throttling",
                  "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"]

PUBLISH_JS = """
async ({room, name, colour, frequency}) => {
  // a "camera" of one colour with a moving white square, and a steady tone
  const canvas = document.createElement("canvas");
  canvas.width = 640;
  canvas.height = 360;
  const ctx = canvas.getContext("2d");
  let n = 0;
  let flashUntil = 0;
  const draw = () => {
    ctx.fillStyle = performance.now() < flashUntil ? "#fff" : colour;
    ctx.fillRect(0, 0, 640, 360);
    ctx.fillStyle = "#fff";
    ctx.fillRect((n * 8) % 600, 300, 40, 40);
    n += 1;
  };
  draw();
  setInterval(draw, 66);
  const audio = new AudioContext();
  await audio.resume();
  const oscillator = audio.createOscillator();
  oscillator.frequency.value = frequency;
  const gain = audio.createGain();
  gain.gain.value = 0.25;
  const out = audio.createMediaStreamDestination();
  oscillator.connect(gain).connect(out);
  oscillator.start();
  // a flash and a beep at the same instant, for the A/V offset
  const beep = audio.createOscillator();
  beep.frequency.value = 3000;
  const beepGain = audio.createGain();
  beepGain.gain.value = 0;
  beep.connect(beepGain).connect(out);
  beep.start();
  window.flash = () => {
    const now = audio.currentTime;
    beepGain.gain.setValueAtTime(0.5, now);
    beepGain.gain.setValueAtTime(0, now + 0.3);
    flashUntil = performance.now() + 300;
    draw();
  };
  const stream = new MediaStream([...out.stream.getAudioTracks(), ...canvas.captureStream().getVideoTracks()]);
  const { PysfuClient } = await import("/pysfu.js");
  const client = new PysfuClient();
  window.testClient = client;
  await client.join(room, name, {autoSubscribe: false});
  await client.publish(stream);
  return client.participantId;
}
"""

SHARE_JS = """
async ({colour}) => {
  const canvas = document.createElement("canvas");
  canvas.width = 1280;
  canvas.height = 720;
  const ctx = canvas.getContext("2d");
  let n = 0;
  const draw = () => {
    ctx.fillStyle = colour;
    ctx.fillRect(0, 0, 1280, 720);
    ctx.fillStyle = "#000";
    ctx.fillRect(40 + (n % 60), 40, 200, 20);
    n += 1;
  };
  draw();
  setInterval(draw, 66);
  const infos = await window.testClient.publish(canvas.captureStream(15), {source: "screen_share", simulcast: false});
  return infos.map((info) => info.source);
}
"""


def region_colour(frame: np.ndarray, rect) -> np.ndarray:
    """Median colour of the middle of a tile (away from edges and the moving square)."""
    x, y, w, h = rect
    return np.median(frame[y + h // 4 : y + h // 2, x + w // 4 : x + 3 * w // 4].reshape(-1, 3), axis=0)


def colour_name(colour: np.ndarray, palette: dict) -> str | None:
    for name, expected in palette.items():
        if np.abs(colour - np.array(expected)).max() < 45:
            return name
    return None


def layout_of(frame: np.ndarray, strip_tiles: int) -> tuple:
    """(whose colour is on the stage, whose colours are in the filmstrip), as seen."""
    palette = {**COLOURS, "screen": SCREEN}
    stage, strip = speaker_layout(1280, 720, strip_tiles)
    on_stage = colour_name(region_colour(frame, fit(16, 9, stage)), palette)
    in_strip = [colour_name(region_colour(frame, fit(16, 9, rect)), palette) for rect in strip]
    return on_stage, in_strip


def flash_onset(frames: list) -> float:
    """Instant of the first frame with a whole tile white (the flash)."""
    for instant, frame in frames:
        if (frame.min(axis=2) > 230).sum() > 25000:
            return instant
    raise AssertionError("no flash in the video")


def beep_onset(samples: np.ndarray, rate: int) -> float:
    """Instant the 3 kHz beep starts, to 5 ms."""
    step = rate // 200
    t = np.arange(step * 2) / rate
    probe = np.exp(-2j * np.pi * 3000 * t)
    energy = np.array([abs(np.dot(samples[i : i + 2 * step].astype(np.float64), probe))
                       for i in range(0, len(samples) - 2 * step, step)])
    onset = int(np.argmax(energy > energy.max() / 2))
    assert energy.max() > 50 * np.median(energy), "no beep in the audio"
    return onset * step / rate


def frame_at(frames: list, seconds: float) -> np.ndarray:
    return min(frames, key=lambda f: abs(f[0] - seconds))[1]


@pytest.mark.browser
async def test_chromium_meeting_recorded_as_one_mp4_with_layout_share_and_every_voice(make_server, tmp_path):
    from .browser import chromium, save_artifact

    server = await make_server(sfu={"recording_dir": str(tmp_path / "recordings")})
    async with chromium(tmp_path, CHROMIUM_EXTRA) as browser:
        pages, ids = {}, {}
        for name in COLOURS:
            page = pages[name] = await browser.new_page()
            await page.goto(f"{server.http}/")
            colour = "rgb({}, {}, {})".format(*COLOURS[name])
            ids[name] = await page.evaluate(
                PUBLISH_JS, {"room": ROOM, "name": name, "colour": colour, "frequency": TONES[name]})
        room = server.rooms.rooms[ROOM]

        def flowing() -> bool:
            now = time.monotonic()
            streams = [s for t in room.tracks() for s in t.layers if s is not None]
            return len(room.tracks()) == 6 and sum(s.flowing(now) for s in streams) >= 6

        await eventually(flowing, timeout=30, message="three pages publishing")
        recording = room.recordings.start(room.tracks())
        started = time.monotonic()
        await asyncio.sleep(5)
        await pages["ana"].evaluate("window.flash()")
        await asyncio.sleep(3)
        layers = recording.layers()  # the stage's camera at its best layer, the filmstrip's at their lowest
        cameras = {t.participant_id: t.id for t in room.tracks() if t.kind == "video" and t.source == "camera"}
        await asyncio.sleep(max(0.0, 10 - (time.monotonic() - started)))
        shared = time.monotonic() - started
        assert await pages["cho"].evaluate(SHARE_JS, {"colour": "rgb({}, {}, {})".format(*SCREEN)}) == ["screen_share"]
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - started)))
        wall = time.monotonic() - started  # what was asked for: stopping finishes the file
        await room.recordings.stop()

    assert recording.error is None and recording.path.suffix == ".mp4"
    with av.open(str(recording.path)) as container:
        duration = container.duration / 1e6
        stream = container.streams.video[0]
        frames = [(float(f.pts * stream.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    assert abs(duration - wall) < 1.0, (duration, wall)

    samples, rate = read_audio(recording.path)
    levels = tone_levels(samples[rate * 3:].astype(np.float64), rate, TONES.values())
    assert min(levels.values()) > 20, levels

    before = frame_at(frames, shared - 1.5)
    after = frame_at(frames, wall - 1.0)
    for name, frame in (("before", before), ("after", after)):
        av.VideoFrame.from_ndarray(frame, format="rgb24").to_image().save(save_artifact(f"composite-{name}-share.png"))
    on_stage, in_strip = layout_of(before, 2)
    assert on_stage in COLOURS and sorted([on_stage, *in_strip]) == sorted(COLOURS), (on_stage, in_strip)
    stage_camera = cameras[ids[on_stage]]
    assert layers[stage_camera] == 1 and all(layers[t] == 0 for t in cameras.values() if t != stage_camera), layers

    flash = flash_onset(frames)
    beep = beep_onset(samples, rate)
    # a frame shows what was captured up to its instant: on average half a frame late
    offset = flash - 1 / (2 * 15) - beep
    print(f"A/V offset {offset * 1000:.0f} ms (flash at {flash:.3f} s, beep at {beep:.3f} s)")
    assert abs(offset) < 0.1, (flash, beep)
    on_stage, in_strip = layout_of(after, 3)
    assert on_stage == "screen" and sorted(in_strip) == sorted(COLOURS), (on_stage, in_strip)


@pytest.mark.browser
async def test_everyone_in_the_room_sees_that_it_is_being_recorded(make_server, tmp_path):
    """The demo page shows "Recording" while the room is recorded: to those
    in it when it starts, to whoever joins meanwhile, and not after."""
    from .browser import chromium

    server = await make_server(sfu={"recording_dir": str(tmp_path / "recordings")})
    badge = "!document.getElementById('recording').hidden"

    async def open_page(browser, name: str, video: int):
        page = await browser.new_page()
        await page.goto(f"{server.http}/?room=shown&name={name}&autojoin=1&audio=0&video={video}")
        await page.wait_for_selector("body[data-state=joined]", timeout=20000)
        return page

    async with chromium(tmp_path) as browser:
        ana = await open_page(browser, "ana", 1)
        ben = await open_page(browser, "ben", 0)
        assert not await ana.evaluate(badge)
        room = server.rooms.rooms["shown"]
        room.recordings.start(room.tracks())
        await eventually_async(lambda: ana.evaluate(badge), timeout=10)
        await eventually_async(lambda: ben.evaluate(badge), timeout=10)
        late = await open_page(browser, "late", 0)
        assert await late.evaluate(badge)
        await room.recordings.stop()
        for page in (ana, ben, late):
            await eventually_async(lambda: page.evaluate(f"!({badge})"), timeout=10)
