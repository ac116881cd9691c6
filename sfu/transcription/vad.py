"""Utterances out of a stream of 16 kHz mono PCM, cut at pauses (webrtcvad).

Whisper does not stream: it decodes whole stretches of speech. The cutter
classifies 30 ms frames as speech or not and closes an utterance after
``end_silence`` seconds of non-speech (or at ``max_length``, so a speaker
who never pauses still gets captions). Each utterance keeps a little audio
from before its first speech frame, where word onsets the detector missed live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 16000
FRAME = 480  # 30 ms, one of the frame lengths webrtcvad takes


@dataclass
class Utterance:
    pcm: np.ndarray  # int16
    start: float  # seconds since the stream's first sample
    end: float


class UtteranceCutter:
    def __init__(self, aggressiveness: int = 2, end_silence: float = 0.6, max_length: float = 15.0,
                 min_speech: float = 0.3, lead_in: float = 0.2) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)
        self._end_frames = max(1, round(end_silence * RATE / FRAME))
        self._max_samples = int(max_length * RATE)
        self._min_speech_frames = max(1, round(min_speech * RATE / FRAME))
        self._lead_frames = round(lead_in * RATE / FRAME)
        self._pending = np.zeros(0, np.int16)  # samples not yet a whole frame
        self._position = 0  # samples classified so far
        self._frames: list[np.ndarray] = []  # the open utterance (or the lead-in before one)
        self._start = 0  # sample index of self._frames[0]
        self._speaking = False
        self._speech_frames = 0
        self._silent_run = 0

    @property
    def in_utterance(self) -> bool:
        return self._speaking

    def current(self) -> Utterance | None:
        """The utterance still open (for a partial decode), if any."""
        if not self._speaking:
            return None
        pcm = np.concatenate(self._frames)
        return Utterance(pcm, self._start / RATE, (self._start + len(pcm)) / RATE)

    def accept(self, pcm: np.ndarray) -> list[Utterance]:
        """Feed samples; returns the utterances they closed."""
        data = np.concatenate((self._pending, pcm)) if len(self._pending) else pcm
        whole = len(data) - len(data) % FRAME
        self._pending = data[whole:].copy()
        done = []
        for offset in range(0, whole, FRAME):
            utterance = self._frame(data[offset:offset + FRAME])
            if utterance is not None:
                done.append(utterance)
        return done

    def flush(self) -> list[Utterance]:
        """The stream ended (or paused): close the open utterance, if any."""
        utterance = self._close() if self._speaking else None
        self._frames, self._speaking = [], False
        self._start = self._position
        return [utterance] if utterance is not None else []

    def _frame(self, frame: np.ndarray):
        speech = self._vad.is_speech(frame.tobytes(), RATE)
        if not self._speaking and not self._frames:
            self._start = self._position
        self._position += FRAME
        self._frames.append(frame)
        if not self._speaking:
            if speech:
                self._speaking, self._speech_frames, self._silent_run = True, 1, 0
            else:
                del self._frames[:-self._lead_frames or len(self._frames)]
                self._start = self._position - FRAME * len(self._frames)
            return None
        self._speech_frames += speech
        self._silent_run = 0 if speech else self._silent_run + 1
        if self._silent_run >= self._end_frames or len(self._frames) * FRAME >= self._max_samples:
            utterance = self._close()
            self._frames, self._speaking = [], False
            return utterance
        return None

    def _close(self):
        if self._speech_frames < self._min_speech_frames:
            return None  # a click or a cough: not worth a decode
        pcm = np.concatenate(self._frames)
        spoken = len(pcm) - self._silent_run * FRAME  # the trailing pause is not part of it
        return Utterance(pcm, self._start / RATE, (self._start + spoken) / RATE)
