"""Composite recording (sfu/composite.py, sfu/compositor.py): the room as one MP4."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import av
import numpy as np
import pytest

from sfu.compositor import Mixer, fit, speaker_layout

from .conftest import eventually
from .media import PatternVideoTrack, ToneAudioTrack


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
    assert (await alice.request({"type": "stop_recording"}))["type"] == "ok"
    wall = time.monotonic() - started
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

