"""A room's transcription: audio taps in, captions out to the room, a transcript on disk.

While a room is transcribed, every audio track in it (published before or
after the start) has an ``AudioTap`` whose 16 kHz PCM goes, from the tap's
thread, to the room's transcription process (service.py) without ever
waiting. Captions come back on the event loop and go to everyone in the
room as ``caption`` events; final ones are appended to the transcript
(transcript.py). When the process ends, for whatever reason, the room is
told ``transcription_stopped`` and the operator gets ``transcript_ready``.
No audio is kept.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import time
from typing import TYPE_CHECKING, Optional

from .. import events
from ..ids import new_id
from ..taps import AudioTap
from .engine import shipped_model_dir
from .service import TranscriptionProcess
from .transcript import Transcript

if TYPE_CHECKING:
    from ..config import SfuConfig
    from ..published_track import PublishedTrack

log = logging.getLogger(__name__)


class TranscriptionError(Exception):
    """Transcription cannot start; ``code`` says why (the protocol's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


UNAVAILABLE = "transcription_unavailable"
TOO_MANY = "too_many_transcriptions"
ALREADY = "already_transcribing"


def unavailable_reason(config: SfuConfig) -> Optional[str]:
    """Why this server cannot transcribe (None: it can), without loading anything."""
    engine = config.transcription_engine
    needed = {"whisper": ("faster_whisper", "ctranslate2"), "pocketsphinx": ("pocketsphinx",)}[engine]
    missing = [name for name in ("webrtcvad", *needed) if importlib.util.find_spec(name) is None]
    if missing:
        return (f"transcription is not installed on this server ({', '.join(missing)} missing: "
                f"install pysfu's 'transcription' extra)")
    if engine == "whisper":
        model_dir = config.transcription_model_dir or shipped_model_dir()
        if not model_dir or not os.path.isfile(os.path.join(model_dir, "model.bin")):
            return f"no Whisper model found (transcription_model_dir={config.transcription_model_dir!r})"
    return None


class TranscriptionSlots:
    """Transcription processes running in this server process, shared by its rooms."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0


class Transcription:
    """One transcription of one room, from start to stop."""

    def __init__(self, room, config: SfuConfig, language: str) -> None:
        self.id = new_id("TR")
        self.room = room
        self.language = language
        self.started_at = time.time()
        self.captions = 0
        self.ready = False  # the engine has loaded its model
        self.error: Optional[str] = None
        self.transcript = Transcript(config.transcript_dir, self.id, room.name, language)
        self.taps: dict[str, tuple[AudioTap, str]] = {}  # track id -> (tap, participant id)
        self.names: dict[str, str] = {}  # participant id -> name, kept after they leave
        settings = {"engine": config.transcription_engine, "model_dir": config.transcription_model_dir,
                    "language": language, "partial_interval": config.transcription_partial_interval}
        self.process = TranscriptionProcess(settings, config.transcription_queue, self._message, self._exited)

    def info(self) -> dict:
        return {"transcription_id": self.id, "language": self.language}

    def tap(self, track: PublishedTrack) -> None:
        if track.kind != "audio" or track.id in self.taps or not self.process.running:
            return
        try:
            tap = AudioTap(track, lambda pcm, pid=track.participant_id: self.process.feed(pid, pcm))
        except Exception as exc:  # a codec taps cannot decode: the others are still transcribed
            log.warning("transcription %s: track %s not transcribed: %s", self.id, track.id, exc)
            return
        self.taps[track.id] = (tap, track.participant_id)

    def untap(self, track_id: str) -> None:
        entry = self.taps.pop(track_id, None)
        if entry is not None:
            entry[0].close()
            self.process.speaker_gone(entry[1])

    async def stop(self) -> None:
        for track_id in list(self.taps):
            self.untap(track_id)
        await self.process.stop()

    # --- from the process (event loop) ---------------------------------------------

    def _message(self, message: tuple) -> None:
        if message[0] == "caption":
            _, participant_id, text, start, end, final = message
            self._caption(participant_id, text, start, end, final)
        elif message[0] == "failed":
            self.error = message[1]
            log.warning("transcription %s of %s cannot run: %s", self.id, self.room.name, message[1])
        elif message[0] == "ready":
            self.ready = True
            log.info("transcription %s of %s: engine ready", self.id, self.room.name)

    def _caption(self, participant_id: str, text: str, start: float, end: float, final: bool) -> None:
        participant = self.room.participants.get(participant_id)
        if participant is not None:
            self.names[participant_id] = participant.name or participant.identity
        self.room.broadcast(events.Caption(participant_id, text, start, end, final))
        if final:
            self.captions += 1
            self.transcript.add(self.names.get(participant_id, participant_id), text, start, end)

    def _exited(self, asked: bool) -> None:
        if not asked and self.error is None:
            self.error = "the transcription process ended unexpectedly"
            log.error("transcription %s of %s: process %s died", self.id, self.room.name, self.process.pid)
        for track_id in list(self.taps):
            self.untap(track_id)
        self.room.transcriptions._ended(self)


class Transcriptions:
    """The transcription of one room (at most one at a time), started and stopped."""

    def __init__(self, room, config: SfuConfig, slots: TranscriptionSlots) -> None:
        self.room = room
        self.config = config
        self.slots = slots
        self.active: Optional[Transcription] = None

    def start(self, language: Optional[str] = None) -> Transcription:
        """Raises TranscriptionError (unavailable, already on, cap reached)."""
        reason = unavailable_reason(self.config)
        if reason is not None:
            raise TranscriptionError(UNAVAILABLE, reason)
        if self.active is not None:
            raise TranscriptionError(ALREADY, "this room is already being transcribed")
        if self.slots.in_use >= self.slots.limit:
            raise TranscriptionError(TOO_MANY, f"the server transcribes {self.slots.in_use} rooms (the limit)")
        transcription = Transcription(self.room, self.config, language or self.config.transcription_language)
        self.active = transcription
        self.slots.in_use += 1
        for track in self.room.tracks():
            transcription.tap(track)
        self.room.broadcast(_started(self.room.name, transcription))
        log.info("transcription %s of %s started (%s, pid %s)", transcription.id, self.room.name,
                 transcription.language, transcription.process.pid)
        return transcription

    async def stop(self) -> Optional[Transcription]:
        """Stop it (None if none was running); returns once its transcript is complete."""
        transcription = self.active
        if transcription is None:
            return None
        await transcription.stop()
        return transcription

    def track_published(self, track: PublishedTrack) -> None:
        if self.active is not None:
            self.active.tap(track)

    def track_gone(self, track_id: str) -> None:
        if self.active is not None:
            self.active.untap(track_id)

    def greet(self, participant) -> None:
        """A participant joined a transcribed room: tell it captions are on
        (on the next loop turn, so that it comes after the join's answer)."""
        if self.active is not None:
            asyncio.get_running_loop().call_soon(self._greet, participant, self.active)

    def _greet(self, participant, transcription: Transcription) -> None:
        if self.active is transcription and self.room.participants.get(participant.id) is participant:
            participant.notify(_started(self.room.name, transcription))

    def _ended(self, transcription: Transcription) -> None:
        if self.active is not transcription:
            return
        self.active = None
        self.slots.in_use -= 1
        reason = "failed" if transcription.error else "stopped"
        self.room.broadcast(events.TranscriptionStopped(
            self.room.name, transcription.id, transcription.language, reason, transcription.error or None))
        self.room._emit("transcript_ready", transcript={
            "id": transcription.id, "language": transcription.language, "captions": transcription.captions,
            "files": [path.name for path in transcription.transcript.files()],
            "reason": reason, "audio_dropped": transcription.process.dropped,
            **({"message": transcription.error} if transcription.error else {})})
        log.info("transcription %s of %s ended (%s; %d audio chunks dropped)", transcription.id, self.room.name,
                 transcription.error or "ok", transcription.process.dropped)


def _started(room: str, transcription: Transcription) -> events.TranscriptionStarted:
    return events.TranscriptionStarted(room, transcription.id, transcription.language)
