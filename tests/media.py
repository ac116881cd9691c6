"""Synthetic media for aiortc test peers: a moving picture and a tone."""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import numpy as np
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame


class PatternVideoTrack(VideoStreamTrack):
    """A moving colour gradient, so every frame differs (real inter frames)."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.width, self.height = width, height
        x = np.linspace(0, 255, width, dtype=np.float32)
        y = np.linspace(0, 255, height, dtype=np.float32)
        self._base = (x[None, :] + y[:, None]) / 2
        self.frames_sent = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        shift = (self.frames_sent * 4) % 256
        plane = ((self._base + shift) % 256).astype(np.uint8)
        image = np.stack([plane, np.roll(plane, 50, axis=1), 255 - plane], axis=2)
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.frames_sent += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A sine tone in 20 ms frames of 48 kHz mono, paced in real time.

    ``amplitude`` is a fraction of full scale (0.3 ≈ -13.5 dBov RMS; 0 sends
    digital silence, which aiortc's audio-level extension reports as -127 dBov).
    """

    kind = "audio"
    RATE = 48000
    SAMPLES = 960

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._sent / self.RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(self.SAMPLES) + self._sent) / self.RATE
        pcm = (self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.RATE
        frame.pts, frame.time_base = self._sent, fractions.Fraction(1, self.RATE)
        self._sent += self.SAMPLES
        return frame


class SpeechAudioTrack(ToneAudioTrack):
    """Recorded speech (a WAV file) in 20 ms frames of 48 kHz mono, paced in
    real time: silence until ``speak()``, then the file once, then silence."""

    def __init__(self, path: str) -> None:
        super().__init__(amplitude=0)
        import av

        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=self.RATE)
            chunks = [f.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
                      for f in resampler.resample(frame)]
        self._speech = np.concatenate(chunks)
        self._position: int | None = None  # sample of the speech being sent, once speaking
        self.spoken = asyncio.Event()  # set when the whole file has been sent
        self.spoke_at: float | None = None  # monotonic time the speech started

    @property
    def duration(self) -> float:
        return len(self._speech) / self.RATE

    def speak(self) -> None:
        self._position, self.spoke_at = 0, time.monotonic()

    async def recv(self) -> AudioFrame:
        frame = await super().recv()
        if self._position is not None and self._position < len(self._speech):
            pcm = np.zeros(self.SAMPLES, np.int16)
            part = self._speech[self._position:self._position + self.SAMPLES]
            pcm[:len(part)] = part
            self._position += self.SAMPLES
            if self._position >= len(self._speech):
                self.spoken.set()
            pts, time_base = frame.pts, frame.time_base
            frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = self.RATE, pts, time_base
        return frame
