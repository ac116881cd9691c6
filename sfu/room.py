"""Rooms: who is in them, which tracks exist, and who receives what.

A room keeps its members and broadcasts to them; its speaker detection
(sfu/room_speakers.py) and meeting features (sfu/meeting.py: chat,
reactions, hands) live in their own modules."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Callable, Optional

from . import events, lastn, recording_files
from .config import SfuConfig
from .events import EventSink
from .layer_selector import OFF
from .load_manager import NORMAL, Shed
from .meeting import Meeting
from .member import Member
from .paced_updates import PacedUpdates
from .participant import Participant
from .published_track import PublishedTrack
from .quality_updates import QualityUpdates
from .recorder import RecordingSlots, Recordings
from .room_speakers import RoomSpeakers
from .transcription.room_transcription import Transcriptions, TranscriptionSlots

log = logging.getLogger(__name__)


class RoomFull(Exception):
    pass


#: Receives room lifecycle events (room_started, participant_joined, ...) with
#: a JSON-able payload; the signaling layer turns them into webhooks.  It must
#: not block: it runs inline with the change it reports.
RoomObserver = Callable[[str, dict], None]


def _ignore(event: str, payload: dict) -> None:
    pass


class Room:
    def __init__(
        self,
        name: str,
        config: SfuConfig,
        on_empty: Callable[[Room], None] = lambda room: None,
        on_participant_closed: Callable[[Member], None] = lambda p: None,
        capacity: int = 150,
        observer: RoomObserver = _ignore,
        metadata: str = "",
        recording_slots: Optional[RecordingSlots] = None,
        transcription_slots: Optional[TranscriptionSlots] = None,
        shed: Shed = NORMAL,
    ) -> None:
        self.name = name
        self.config = config
        self.capacity = capacity
        self.metadata = metadata
        self.created_at = time.time()
        self.participants: dict[str, Member] = {}
        self._on_empty = on_empty
        self._on_participant_closed = on_participant_closed
        self._observer = observer
        slots = recording_slots or RecordingSlots(config.max_recordings)
        self.recordings = Recordings(self, config.recording_dir, config.max_recordings_per_room, slots)
        self.transcriptions = Transcriptions(
            self, config, transcription_slots or TranscriptionSlots(config.max_transcriptions))
        self.meeting = Meeting(self.broadcast)
        #: Active speaker detection: running while anyone is in the room.
        self.speakers = RoomSpeakers(self)
        self.quality_updates = QualityUpdates(self._send_quality)
        #: Last-N and speakers, paced over loop turns after a change of speakers.
        self._selections: PacedUpdates = PacedUpdates(self._selection_context, self._select)
        #: What the worker's load takes off the video now (sfu/load_manager.py).
        self.shed = shed

    def join(
        self, name: str, notify: EventSink, auto_subscribe: bool = True,
        identity: str = "", metadata: str = "", hidden: bool = False,
        slots: Optional[dict[str, int]] = None,
    ) -> Participant:
        """Add a participant; hidden ones are never announced to the room.
        ``slots``: a slot subscriber's video and audio slot counts (sfu/slots.py)."""
        if len(self.participants) >= self.capacity:
            raise RoomFull(self.name)
        participant = Participant(self, name, self.config, notify, auto_subscribe, slots)
        participant.identity = identity or participant.id
        participant.metadata = metadata
        participant.hidden = hidden
        if not hidden:
            self.broadcast(events.ParticipantJoined(participant.info()))
        self.participants[participant.id] = participant
        self._emit("participant_joined", participant=participant.info())
        self.speakers.start()
        if auto_subscribe:
            for track in self.tracks():
                participant.subscribe(track)
        participant.subscriber.set_speakers(self.speakers.active_ids())
        self.apply_last_n(participant)  # it publishes nothing yet: no one else's last-N changes
        self.transcriptions.greet(participant)
        self._tell_load(participant)
        return participant

    async def leave(self, participant: Member, reason: str = "left") -> None:
        if not await self._drop(participant):
            return
        self._on_participant_closed(participant)
        if not participant.hidden:
            self.broadcast(events.ParticipantLeft(participant.id, reason))
        self._emit("participant_left", participant=participant.info(), reason=reason)
        self.apply_last_n()
        await self._finish_if_empty()

    async def _finish_if_empty(self) -> None:
        """The last one went: stop what runs for the room, then let it go."""
        if self.participants:
            return
        self.speakers.stop()
        self.quality_updates.stop()
        self._selections.close()
        await self.recordings.stop()  # files are complete before room_finished
        await self.transcriptions.stop()
        self._on_empty(self)

    async def _drop(self, participant: Member) -> bool:
        """Out of the room, its tracks unpublished (quietly) and closed; False if it was not in it."""
        if self.participants.get(participant.id) is not participant:
            return False
        del self.participants[participant.id]
        self.speakers.forget(participant.id)
        self._selections.discard(participant)
        self.quality_updates.forget(participant.id)
        for track in list(participant.tracks.values()):
            self.track_unpublished(participant, track, announce=False)
        await participant.close()
        return True

    # --- participants of other workers of this node (issue 7) ---------------

    def add_remote(self, participant: Member) -> None:
        """A participant of another worker joins this worker's part of the room."""
        if not participant.hidden:
            self.broadcast(events.ParticipantJoined(participant.info()))
        self.participants[participant.id] = participant
        self.apply_last_n()

    def add_remote_track(self, owner: Member, track: PublishedTrack) -> None:
        owner.tracks[track.id] = track
        self.track_published(owner, track)

    def remove_remote_track(self, owner: Member, track_id: str) -> Optional[PublishedTrack]:
        track = owner.tracks.pop(track_id, None)
        if track is not None:
            self.track_unpublished(owner, track)
        return track

    async def remove_remote(self, participant: Member, reason: str) -> None:
        """Like leave, without lifecycle events: its own worker reports those."""
        if not await self._drop(participant):
            return
        if not participant.hidden:
            self.broadcast(events.ParticipantLeft(participant.id, reason))
        self.apply_last_n()
        await self._finish_if_empty()

    def local_participants(self) -> list[Participant]:
        """The members served here (the others are served by their own worker)."""
        return [p for p in self.participants.values() if p.local]

    # --- reconnect and resume -------------------------------------------------

    async def suspend(self, participant: Participant, reason: str) -> None:
        """Its client is gone: the others see it ``reconnecting`` (not left)
        until it resumes or its grace period ends."""
        if self.participants.get(participant.id) is not participant:
            return
        if await participant.suspend(reason):
            self._announce_state(participant)

    async def resume(self, participant: Participant, notify: EventSink) -> bool:
        """A client took the participant over again (see Participant.resume)."""
        if self.participants.get(participant.id) is not participant:
            return False
        if not await participant.resume(notify):
            return False
        self._announce_state(participant)
        self.apply_last_n()
        self._tell_load(participant)
        return True

    def _announce_state(self, participant: Participant) -> None:
        if not participant.hidden:
            self.broadcast(events.ParticipantState(participant.id, participant.state), exclude=participant.id)

    def quality_changed(self, participant: Participant) -> None:
        """Tell the room (a hidden participant: only itself) its new quality,
        with the other changes of the next moment (sfu/quality_updates.py)."""
        update = {"participant_id": participant.id, "quality": participant.quality.quality,
                  **participant.quality.measure.info()}
        if participant.hidden:
            participant.notify(events.ConnectionQuality([update]))
        else:
            self.quality_updates.add(participant.id, update)

    def _send_quality(self, updates: list[dict]) -> None:
        event = events.ConnectionQuality(updates)
        for target in list(self.participants.values()):
            target.notify(event)

    def roster(self, exclude: Optional[str] = None) -> list[dict]:
        return [p.info() for p in self.participants.values() if p.id != exclude and not p.hidden]

    def find_identity(self, identity: str) -> Optional[Member]:
        for participant in self.participants.values():
            if participant.identity == identity:
                return participant
        return None

    def tracks(self) -> list[PublishedTrack]:
        return [t for p in self.participants.values() for t in p.tracks.values()]

    def find_track(self, track_id: str) -> Optional[PublishedTrack]:
        for participant in self.participants.values():
            track = participant.tracks.get(track_id)
            if track is not None:
                return track
        return None

    # --- track changes ------------------------------------------------------

    def track_published(self, owner: Member, track: PublishedTrack) -> None:
        self.broadcast(events.TrackPublished(track.info()), exclude=owner.id)
        self._emit("track_published", participant=owner.info(), track=track.info())
        for participant in self.participants.values():
            if participant is not owner and participant.auto_subscribe:
                participant.subscribe(track)
        if track.kind == "video" and track.source != "screen_share":
            self.apply_last_n()  # last-N ranks cameras only
        self.transcriptions.track_published(track)

    def track_unpublished(self, owner: Member, track: PublishedTrack, announce: bool = True) -> None:
        for participant in self.participants.values():
            participant.unsubscribe(track.id)
        self.transcriptions.track_gone(track.id)
        self._emit("track_unpublished", participant=owner.info(), track=track.info())
        if announce:
            self.broadcast(events.TrackUnpublished(track.id, owner.id), exclude=owner.id)

    def track_muted(self, owner: Member, track: PublishedTrack) -> None:
        self.broadcast(events.TrackMuted(track.id, owner.id, track.muted), exclude=owner.id)

    def broadcast(self, event: events.Event, exclude: Optional[str] = None) -> None:
        for participant in list(self.participants.values()):
            if participant.id != exclude:
                participant.notify(event)

    # --- operator actions (admin API) ----------------------------------------

    def summary(self) -> dict:
        return {
            "name": self.name,
            "num_participants": len(self.participants),
            "max_participants": self.capacity,
            "metadata": self.metadata,
            "created_at": int(self.created_at),
        }

    def set_metadata(self, metadata: str) -> None:
        self.metadata = metadata
        self.broadcast(events.RoomUpdated({"name": self.name, "metadata": metadata}))

    def update_participant(self, participant: Member, name: Optional[str], metadata: Optional[str]) -> None:
        if name is not None:
            participant.name = name
        if metadata is not None:
            participant.metadata = metadata
        event = events.ParticipantUpdated(participant.info())
        if participant.hidden:
            participant.notify(event)
        else:
            self.broadcast(event)

    async def remove(self, participant: Member, reason: str) -> None:
        """End a participant's session: it gets ``leave`` with ``reason``."""
        participant.notify(events.Leave(reason))
        await self.leave(participant, reason)

    def send_data(
        self, payload: str, topic: str = "", identities: Optional[list[str]] = None,
        sender: Optional[Member] = None,
    ) -> int:
        """Send a ``data`` event to everyone but the sender (or only to the
        given identities); returns how many got it."""
        event = events.Data(payload, topic, sender.id if sender is not None else None)
        targets = [
            p for p in self.participants.values()
            if p is not sender and (not identities or p.identity in identities)
        ]
        for participant in targets:
            participant.notify(event)
        return len(targets)

    # --- last-N (issue 4) and load shedding (issue 13) ------------------------------

    def apply_last_n(self, only: Optional[Participant] = None) -> None:
        """Tell every subscriber (or just ``only``, whose pins changed: pages
        of the demo's grid re-pin often) whose camera video it may receive,
        and what the server's load takes off it (the speakers' spared)."""
        context = self._selection_context(speakers=False)
        for participant in [only] if only is not None else self.local_participants():
            self._select(context, participant)

    def speakers_changed(self) -> None:
        """Every subscriber's audio slots follow the new speakers, and its
        last-N their order: paced, a few milliseconds per loop turn."""
        self._selections.add(self.local_participants())

    def _selection_context(self, speakers: bool = True) -> tuple:
        publishers = [
            p.id for p in self.participants.values()
            if any(t.kind == "video" and t.source != "screen_share" for t in p.tracks.values())
        ]
        spared = self.speakers.spared_ids() if self.shed.level else []
        return publishers, spared, self.speakers.active_ids() if speakers else None

    def _select(self, context: tuple, participant: Participant) -> None:
        if self.participants.get(participant.id) is not participant:
            return  # left while queued
        publishers, spared, speakers = context
        allowed = lastn.rank(
            publishers, self.speakers.speech_order.order, participant.pins,
            self.shed.last_n(self.config.last_n), participant.id, first=spared,
        )
        participant.subscriber.set_video_allowed(allowed, self.shed, spared, speakers)  # in order: slots fill from it

    def would_shed(self, shed: Shed) -> bool:
        """Whether ``shed`` takes any camera video off what the subscribers
        here get now (a room of small tiles loses nothing to a layer cap)."""
        spared = set(self.speakers.spared_ids())
        last_n = shed.last_n(self.config.last_n)
        for participant in self.local_participants():
            cameras = [
                d for d in participant.subscriber.downtracks()
                if d.kind == "video" and d.desired != OFF and d.track.source != "screen_share"
            ]
            if sum(d.track.participant_id not in spared for d in cameras) > last_n:
                return True
            if any(d.desired > shed.layer_cap(d.track, spared, len(d.track.layers)) for d in cameras):
                return True
        return False

    def set_shed(self, shed: Shed) -> None:
        """The worker's load level changed: apply it, and tell everyone."""
        if shed != self.shed:
            self.shed = shed
            self.apply_last_n()
            self.broadcast(events.ServerLoad(shed.level, shed.name))

    def _tell_load(self, participant: Participant) -> None:
        """A newcomer (or a resumed client) learns the load level, if any,
        on the next loop turn: after the answer to its join."""
        def tell() -> None:
            if self.shed.level and self.participants.get(participant.id) is participant:
                participant.notify(events.ServerLoad(self.shed.level, self.shed.name))

        if self.shed.level:
            asyncio.get_running_loop().call_soon(tell)

    # ------------------------------------------------------------------------

    def _emit(self, event: str, **payload) -> None:
        try:
            self._observer(event, {"room": self.summary(), **payload})
        except Exception:
            log.exception("room observer failed on %s", event)

    async def close(self, reason: str = "room_closed") -> None:
        for participant in list(self.participants.values()):
            await self.remove(participant, reason)


class RoomRegistry:
    """All rooms of this server; a room exists while someone is in it.

    It also keeps the traffic counters of participants that have gone, so
    that the totals it reports only ever grow.
    """

    def __init__(self, config: SfuConfig, capacity: int = 150, observer: RoomObserver = _ignore) -> None:
        self.config = config
        self.capacity = capacity
        self.observer = observer
        self.rooms: dict[str, Room] = {}
        self._gone: Counter = Counter()
        self.recording_slots = RecordingSlots(config.max_recordings)
        self.transcription_slots = TranscriptionSlots(config.max_transcriptions)
        self.shed = NORMAL
        recording_files.expire(config.recording_dir, config.recording_retention_days)

    def get_or_create(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.create(name)
        return room

    def create(self, name: str, capacity: Optional[int] = None, metadata: str = "") -> Room:
        """Open a new room (it stays until its last participant leaves, or deleted)."""
        assert name not in self.rooms, name
        room = self.rooms[name] = Room(
            name, self.config, self._room_empty, self._participant_closed,
            capacity=capacity or self.capacity, observer=self.observer, metadata=metadata,
            recording_slots=self.recording_slots, transcription_slots=self.transcription_slots,
            shed=self.shed,
        )
        room._emit("room_started")
        return room

    def would_shed(self, shed: Shed) -> bool:
        return any(room.would_shed(shed) for room in list(self.rooms.values()))

    def set_shed(self, shed: Shed) -> None:
        """The worker's load level (sfu/load_manager.py): its rooms share its loop."""
        self.shed = shed
        for room in list(self.rooms.values()):
            room.set_shed(shed)

    async def delete(self, room: Room, reason: str = "room_deleted") -> None:
        """Close a room: everyone in it gets ``leave`` with ``reason``."""
        await room.close(reason)
        self._room_empty(room)

    def _room_empty(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            room._emit("room_finished")

    def _participant_closed(self, participant: Member) -> None:
        self._gone.update(participant.counters())

    def participants(self) -> list[Participant]:
        return [p for room in self.rooms.values() for p in room.local_participants()]

    def counters(self) -> Counter:
        """Traffic totals since start, live participants included."""
        totals = Counter(self._gone)
        for participant in self.participants():
            totals.update(participant.counters())
        return totals

    async def leave(self, participant: Participant, reason: str = "left") -> None:
        await participant.room.leave(participant, reason)

    async def close(self, reason: str = "server_shutdown") -> None:
        for room in list(self.rooms.values()):
            await self.delete(room, reason)
