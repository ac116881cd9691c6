"""Example tap: one WAV file per speaker of a room (16 kHz mono).

Every audio track of the room gets an ``AudioTap``; its PCM is appended to
``<directory>/<participant identity>-<track id>.wav`` in the tap's thread,
so the event loop never waits on the disk. Tracks published later are
picked up by calling ``sync()`` again (e.g. from a timer). Use it from code
that owns the room registry:

    recorder = WavPerSpeaker(room, "speakers/")
    recorder.sync()
    ...
    await recorder.close()
"""

from __future__ import annotations

import wave
from pathlib import Path

from sfu.taps import PCM_RATE, AudioTap


class WavPerSpeaker:
    def __init__(self, room, directory: str | Path) -> None:
        self.room = room
        self.directory = Path(directory)
        self.taps: dict[str, tuple[AudioTap, wave.Wave_write]] = {}

    def sync(self) -> None:
        """Tap every audio track not tapped yet; drop taps of tracks gone."""
        self.directory.mkdir(parents=True, exist_ok=True)
        live = {}
        for participant in self.room.participants.values():
            for track in participant.tracks.values():
                if track.kind == "audio":
                    live[track.id] = participant.identity
        for track_id in [t for t in self.taps if t not in live]:
            self._stop(track_id)
        for track_id, identity in live.items():
            if track_id not in self.taps:
                safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in identity)
                wav = wave.open(str(self.directory / f"{safe}-{track_id}.wav"), "wb")
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(PCM_RATE)
                tap = AudioTap(self.room.find_track(track_id), lambda pcm, w=wav: w.writeframes(pcm.tobytes()))
                self.taps[track_id] = (tap, wav)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.wav"))

    def _stop(self, track_id: str) -> None:
        tap, wav = self.taps.pop(track_id)
        tap.close()
        tap._thread.join()
        wav.close()

    async def close(self) -> None:
        for tap, _ in self.taps.values():
            await tap.aclose()
        for _, wav in self.taps.values():
            wav.close()
        self.taps.clear()
