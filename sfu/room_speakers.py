"""Who is speaking in a room (issue 4), tick by tick.

Every SPEAKER_TICK while anyone is in the room, each member's audio level
of the last tick (sfu/speaker.py: LevelMeter) goes to the room's
SpeakerDetector; a change it reports is broadcast (``speakers_changed``),
handed to the local subscribers (their audio slots follow the speakers),
and reorders the room's last-N by who spoke last (sfu/lastn.py); while the
server sheds load, the speakers' video is spared (sfu/load_manager.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

from . import events, lastn, ticker
from .member import Member
from .speaker import LevelMeter, SpeakerDetector

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger(__name__)

#: Seconds between two speaker detection rounds.
SPEAKER_TICK = 0.25


class RoomSpeakers:
    def __init__(self, room: Room) -> None:
        self._room = room
        self.detector = SpeakerDetector()
        #: Who spoke last, most recent first: last-N ranks cameras by it.
        self.speech_order = lastn.SpeechOrder()
        self._meter = LevelMeter()
        self._ticker: Optional[ticker.Ticker] = None

    @property
    def dominant(self) -> Optional[str]:
        return self.detector.dominant

    def active_ids(self) -> list[str]:
        """The ids of the active speakers, the dominant one first."""
        return [s["participant_id"] for s in self.detector.active()]

    def spared_ids(self) -> list[str]:
        """Whose video load shedding never takes: the dominant speaker (in a
        pause too) and the active speakers."""
        ids = self.active_ids()
        dominant = self.detector.dominant
        if dominant is not None and dominant not in ids:
            ids.insert(0, dominant)
        return ids

    def start(self) -> None:
        """Detect every SPEAKER_TICK, on the timer the participants tick on (sfu/ticker.py)."""
        if self._ticker is None:
            self._ticker = ticker.shared(SPEAKER_TICK)
            self._ticker.add(self._tick)

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.discard(self._tick)
            self._ticker = None

    def forget(self, member_id: str) -> None:
        self.detector.remove(member_id)
        self.speech_order.forget(member_id)

    def _tick(self, now: float) -> None:
        try:
            self.detect(now)
        except Exception:
            log.exception("room %s: speaker detection failed", self._room.name)

    def detect(self, now: float) -> Optional[list[dict]]:
        """Feed each member's audio level of the last tick to the detector;
        broadcast ``speakers_changed`` when it reports a change (at most
        twice a second).  Returns what was broadcast, if anything."""
        room = self._room
        for member in room.participants.values():
            if not member.hidden:
                level, voice = self._loudest(member)
                self.detector.sample(member.id, level, voice, now)
        self._meter.end_tick()
        speakers = self.detector.poll(now)
        if speakers is not None:
            ids = [s["participant_id"] for s in speakers]
            room.broadcast(events.SpeakersChanged(speakers))
            self.speech_order.heard(ids)
            room.speakers_changed()  # audio slots follow the speakers; last-N too, and shedding spares them
        return speakers

    def _loudest(self, member: Member) -> tuple[float, bool]:
        """The level of the member's loudest unmuted microphone, and whether any had voice."""
        level, voice = 127.0, False
        for track in member.tracks.values():
            stream = track.stream if track.kind == "audio" else None
            if stream is None or stream.audio_level_id is None:
                continue
            track_level, track_voice = self._meter.read(stream)
            if track.muted:
                continue
            if track_level < level:
                level = track_level
            voice = voice or track_voice
        return level, voice
