"""Rooms: who is in them, which tracks exist, and who receives what."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Callable, Optional

from .config import SfuConfig
from .participant import EventSink, Participant
from .published_track import PublishedTrack

log = logging.getLogger(__name__)


class RoomFull(Exception):
    pass


class Room:
    def __init__(
        self,
        name: str,
        config: SfuConfig,
        on_empty: Callable[[Room], None] = lambda room: None,
        on_participant_closed: Callable[[Participant], None] = lambda p: None,
        capacity: int = 150,
    ) -> None:
        self.name = name
        self.config = config
        self.capacity = capacity
        self.participants: dict[str, Participant] = {}
        self._on_empty = on_empty
        self._on_participant_closed = on_participant_closed

    def join(self, name: str, notify: EventSink, auto_subscribe: bool = True) -> Participant:
        if len(self.participants) >= self.capacity:
            raise RoomFull(self.name)
        participant = Participant(self, name, self.config, notify, auto_subscribe)
        self._broadcast("participant_joined", {"participant": participant.info()})
        self.participants[participant.id] = participant
        if auto_subscribe:
            for track in self.tracks():
                participant.subscribe(track)
        return participant

    async def leave(self, participant: Participant, reason: str = "left") -> None:
        if self.participants.get(participant.id) is not participant:
            return
        del self.participants[participant.id]
        for track in list(participant.tracks.values()):
            self.track_unpublished(participant, track, announce=False)
        await participant.close()
        self._on_participant_closed(participant)
        self._broadcast("participant_left", {"participant_id": participant.id, "reason": reason})
        if not self.participants:
            self._on_empty(self)

    def roster(self, exclude: Optional[str] = None) -> list[dict]:
        return [p.info() for p in self.participants.values() if p.id != exclude]

    def tracks(self) -> list[PublishedTrack]:
        return [t for p in self.participants.values() for t in p.tracks.values()]

    def find_track(self, track_id: str) -> Optional[PublishedTrack]:
        for participant in self.participants.values():
            track = participant.tracks.get(track_id)
            if track is not None:
                return track
        return None

    # --- track changes ------------------------------------------------------

    def track_published(self, owner: Participant, track: PublishedTrack) -> None:
        self._broadcast("track_published", {"track": track.info()}, exclude=owner.id)
        for participant in self.participants.values():
            if participant is not owner and participant.auto_subscribe:
                participant.subscribe(track)

    def track_unpublished(self, owner: Participant, track: PublishedTrack, announce: bool = True) -> None:
        for participant in self.participants.values():
            participant.unsubscribe(track.id)
        if announce:
            self._broadcast(
                "track_unpublished",
                {"track_id": track.id, "participant_id": owner.id},
                exclude=owner.id,
            )

    def track_muted(self, owner: Participant, track: PublishedTrack) -> None:
        self._broadcast(
            "track_muted",
            {"track_id": track.id, "participant_id": owner.id, "muted": track.muted},
            exclude=owner.id,
        )

    def _broadcast(self, event: str, payload: dict, exclude: Optional[str] = None) -> None:
        for participant in list(self.participants.values()):
            if participant.id != exclude:
                participant.notify(event, payload)

    async def close(self, reason: str = "room_closed") -> None:
        for participant in list(self.participants.values()):
            participant.notify("leave", {"reason": reason})
            await self.leave(participant, reason)


class RoomRegistry:
    """All rooms of this server; a room exists while someone is in it.

    It also keeps the traffic counters of participants that have gone, so
    that the totals it reports only ever grow.
    """

    def __init__(self, config: SfuConfig) -> None:
        self.config = config
        self.rooms: dict[str, Room] = {}
        self._gone: Counter = Counter()

    def get_or_create(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(
                name, self.config, self._room_empty, self._participant_closed
            )
        return room

    def _room_empty(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]

    def _participant_closed(self, participant: Participant) -> None:
        self._gone.update(participant.counters())

    def participants(self) -> list[Participant]:
        return [p for room in self.rooms.values() for p in room.participants.values()]

    def counters(self) -> Counter:
        """Traffic totals since start, live participants included."""
        totals = Counter(self._gone)
        for participant in self.participants():
            totals.update(participant.counters())
        return totals

    async def leave(self, participant: Participant, reason: str = "left") -> None:
        await participant.room.leave(participant, reason)

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            await room.close("server_shutdown")
        self.rooms.clear()
