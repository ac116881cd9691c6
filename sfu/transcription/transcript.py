"""A meeting's transcript on disk: ``transcript.vtt`` (WebVTT, each cue
tagged with its speaker) and ``transcript.txt``, one line per utterance.

Final captions are appended and flushed as they arrive, so whatever was
said before a crash is on disk. Each transcript has a directory of its own,
``<transcript_dir>/<transcript id>/``, with ``meta.json`` naming its room;
directories are 0700 and files 0600, like recordings.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Optional

FILES = ("transcript.vtt", "transcript.txt")
_ID = re.compile(r"^TR_[A-Za-z0-9_-]{1,32}$")


def timestamp(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _voice(name: str) -> str:
    """A speaker name as a WebVTT voice annotation may carry it."""
    return re.sub(r"[<>&\n\r]", " ", name).strip() or "speaker"


class Transcript:
    def __init__(self, directory: str | os.PathLike, transcript_id: str, room: str, language: str) -> None:
        self.id = transcript_id
        self.room = room
        self.path = Path(directory) / transcript_id
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.mkdir(mode=0o700)
        self.cues = 0
        self._write("meta.json", json.dumps({"id": transcript_id, "room": room, "language": language,
                                             "started_at": time.time()}) + "\n")
        self._write("transcript.vtt", "WEBVTT\n")
        self._write("transcript.txt", "")

    def add(self, speaker: str, text: str, start: float, end: float) -> None:
        """Append one final caption to both files."""
        self.cues += 1
        text = " ".join(text.split())
        self._write("transcript.vtt", f"\n{self.cues}\n{timestamp(start)} --> {timestamp(max(end, start))}\n"
                                      f"<v {_voice(speaker)}>{text}\n")
        self._write("transcript.txt", f"[{timestamp(start)}] {speaker}: {text}\n")

    def files(self) -> list[Path]:
        return [self.path / name for name in FILES]

    def _write(self, name: str, text: str) -> None:
        fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def find_transcript_file(directory: str | os.PathLike, transcript_id: str, room: str, name: str) -> Optional[Path]:
    """The file ``name`` of a transcript of ``room``; None unless all of that holds."""
    if not _ID.match(transcript_id) or name not in FILES:
        return None
    path = Path(directory) / transcript_id
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("room") != room or not (path / name).is_file():
        return None
    return path / name
