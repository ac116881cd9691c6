"""Media taps: a track's decoded media in-process (sfu/taps.py)."""

from __future__ import annotations

import asyncio

import numpy as np

from sfu.taps import PCM_RATE, AudioTap, VideoTap

from .media import PatternVideoTrack, ToneAudioTrack
from .waiting import eventually


async def test_audio_tap_hears_the_440_hz_tone(server, clients):
    publisher = await clients()
    await publisher.join("tap", "alice")
    infos = await publisher.publish([ToneAudioTrack(440), PatternVideoTrack(320, 240)])
    room = server.rooms.rooms["tap"]
    audio = room.find_track(next(i["id"] for i in infos if i["kind"] == "audio"))
    video = room.find_track(next(i["id"] for i in infos if i["kind"] == "video"))

    frames = []
    video_tap = VideoTap(video, frames.append)
    chunks = []
    async with AudioTap(audio) as tap:
        async for pcm in tap:
            assert pcm.dtype == np.int16 and pcm.ndim == 1
            chunks.append(pcm)
            if sum(len(c) for c in chunks) >= 2 * PCM_RATE:
                break
    assert not tap.running and tap.track.stream.readers == []  # detached, decoder gone

    pcm = np.concatenate(chunks)[PCM_RATE // 2 :].astype(np.float64)  # past the codec's start-up
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    peak = np.fft.rfftfreq(len(pcm), 1 / PCM_RATE)[spectrum.argmax()]
    assert abs(peak - 440) < 5, f"spectral peak at {peak:.1f} Hz"

    await eventually(lambda: frames, 5, message="the video tap decoded nothing")
    assert (frames[-1].width, frames[-1].height) == (320, 240)
    await video_tap.aclose()
    assert not video_tap.running


async def test_wav_per_speaker_writes_one_file_per_speaker(server, clients, tmp_path):
    import wave

    from sfu.examples.wav_per_speaker import WavPerSpeaker

    for name, frequency in (("alice", 440), ("bob", 660)):
        client = await clients()
        await client.join("wav", name)
        await client.publish([ToneAudioTrack(frequency)])
    room = server.rooms.rooms["wav"]
    await eventually(lambda: len(room.tracks()) == 2)
    writer = WavPerSpeaker(room, tmp_path)
    writer.sync()
    await asyncio.sleep(1.5)
    await writer.close()
    files = writer.files()
    assert len(files) == 2
    for path in files:
        with wave.open(str(path)) as wav:
            assert wav.getframerate() == PCM_RATE and wav.getnframes() > PCM_RATE // 2
