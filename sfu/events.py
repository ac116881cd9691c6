"""The events the core sends to a participant's client, one dataclass each.

A participant's ``notify`` takes one of these; the signaling layer turns it
into the WebSocket message of the same ``type`` and fields
(signaling/protocol/events.py builds its event models from these classes, and
docs/protocol.md §7 documents them; tests/test_events.py keeps the three,
and static/pysfu.js, in step).  Nested objects are the plain dicts the core
builds (``Participant.info()``, ``PublishedTrack.info()``, ...); the comment
on such a field names their shape in docs/protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal, Optional

LayerQuality = Literal["low", "medium", "high", "off"]
#: What the server sheds at each load level (sfu/load_manager.py: LEVELS).
ShedName = Literal["none", "top_layer_off", "lowest_layer_only", "last_n_halved", "speakers_only",
                   "speakers_top_layer_off"]
ParticipantStateName = Literal["active", "reconnecting"]


@dataclass(frozen=True)
class Event:
    #: The message's ``type`` on the wire.
    type: ClassVar[str]


#: Where a participant's events go (its client's session, or nowhere).
EventSink = Callable[[Event], None]


# --- the room's members and tracks ---------------------------------------------


@dataclass(frozen=True)
class ParticipantJoined(Event):
    """Someone joined the room (never a hidden participant)."""

    type: ClassVar[str] = "participant_joined"
    participant: dict  # ParticipantInfo


@dataclass(frozen=True)
class ParticipantLeft(Event):
    """Someone left the room, for ``reason``."""

    type: ClassVar[str] = "participant_left"
    participant_id: str
    reason: str = ""


@dataclass(frozen=True)
class ParticipantUpdated(Event):
    """A participant's name or metadata changed (admin API)."""

    type: ClassVar[str] = "participant_updated"
    participant: dict  # ParticipantInfo


@dataclass(frozen=True)
class ParticipantState(Event):
    """Someone's connection dropped ("reconnecting": keep the tile, it may
    come back) or it resumed ("active")."""

    type: ClassVar[str] = "participant_state"
    participant_id: str
    state: ParticipantStateName


@dataclass(frozen=True)
class TrackPublished(Event):
    type: ClassVar[str] = "track_published"
    track: dict  # TrackInfo


@dataclass(frozen=True)
class TrackUnpublished(Event):
    type: ClassVar[str] = "track_unpublished"
    track_id: str
    participant_id: str


@dataclass(frozen=True)
class TrackMuted(Event):
    type: ClassVar[str] = "track_muted"
    track_id: str
    participant_id: str
    muted: bool


@dataclass(frozen=True)
class RoomUpdated(Event):
    """The room's metadata changed (admin API)."""

    type: ClassVar[str] = "room_updated"
    room: dict  # {name, metadata}


# --- what this participant receives and sends -----------------------------------


@dataclass(frozen=True)
class SubscriberOffer(Event):
    """A new offer for the subscriber PC: answer it with ``subscriber_answer``."""

    type: ClassVar[str] = "subscriber_offer"
    sdp: str
    tracks: list[dict]  # SubscribedTrack[]


@dataclass(frozen=True)
class SlotsChanged(Event):
    """Slot subscribers only: every slot and its occupant, sent once the
    slots are negotiated and whenever an occupant changes (before its media)."""

    type: ClassVar[str] = "slots_changed"
    slots: list[dict]  # [{mid, kind, participant_id?, track_id?}]


@dataclass(frozen=True)
class LayerChanged(Event):
    """The layer a subscriber now receives for a track ("off" when paused)."""

    type: ClassVar[str] = "layer_changed"
    track_id: str
    quality: LayerQuality
    rid: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None


@dataclass(frozen=True)
class SubscribedQualityUpdate(Event):
    """Dynacast: which simulcast layers of your track anyone receives."""

    type: ClassVar[str] = "subscribed_quality_update"
    track_id: str
    qualities: list[dict]  # [{quality, rid, enabled}]


@dataclass(frozen=True)
class ConnectionQuality(Event):
    """Participants whose connection quality changed (yours included)."""

    type: ClassVar[str] = "connection_quality"
    updates: list[dict]  # [{participant_id, quality, upstream_loss?, ...}]


@dataclass(frozen=True)
class ServerLoad(Event):
    """The server serving you is overloaded and sheds video to keep up
    (``level`` above 0), or has given it all back (0). Never audio, never the
    speakers' video, never screen shares."""

    type: ClassVar[str] = "server_load"
    level: int
    shed: ShedName


# --- the end of a session ----------------------------------------------------------


@dataclass(frozen=True)
class Leave(Event):
    """The server ends the session (kicked, server shutting down, ...)."""

    type: ClassVar[str] = "leave"
    reason: str


@dataclass(frozen=True)
class Reconnect(Event):
    """To the dropped client itself, when the server saw its media connection
    fail: the socket closes next; ``resume`` within ``grace`` seconds."""

    type: ClassVar[str] = "reconnect"
    reason: str
    grace: float


# --- data and meeting features -------------------------------------------------


@dataclass(frozen=True)
class Data(Event):
    """Data sent to the room by a participant (send_data) or the operator (admin API)."""

    type: ClassVar[str] = "data"
    payload: str
    topic: str = ""
    #: The sender; absent when the server's operator sent it.
    participant_id: Optional[str] = None


@dataclass(frozen=True)
class ChatMessage(Event):
    """A chat message posted to the room (the sender gets it too)."""

    type: ClassVar[str] = "chat_message"
    #: Server-assigned message id ("CM_..."), not a request id.
    id: str
    participant_id: str
    name: str
    text: str
    #: When the server received it: Unix time in milliseconds.
    ts: int


@dataclass(frozen=True)
class Reaction(Event):
    """Someone reacted (the sender gets it too); nothing is kept."""

    type: ClassVar[str] = "reaction"
    participant_id: str
    emoji: str
    ts: int


@dataclass(frozen=True)
class HandRaised(Event):
    """Someone raised or lowered their hand (the sender gets it too)."""

    type: ClassVar[str] = "hand_raised"
    participant_id: str
    raised: bool


@dataclass(frozen=True)
class SpeakersChanged(Event):
    """The active speakers changed (sent to everyone, at most twice a second)."""

    type: ClassVar[str] = "speakers_changed"
    #: Active speakers, dominant first, then loudest first; empty when silent.
    speakers: list[dict]  # [{participant_id, level, dominant?}]


# --- recording and transcription ------------------------------------------------


@dataclass(frozen=True)
class RecordingStarted(Event):
    """Someone started recording the room (sent to everyone in it; never the
    file's path, which only the roomAdmin who started it is told)."""

    type: ClassVar[str] = "recording_started"
    room: str
    recording_id: str
    track_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RecordingStopped(Event):
    """A recording of the room ended; its file is complete."""

    type: ClassVar[str] = "recording_stopped"
    room: str
    recording_id: str
    track_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TranscriptionStarted(Event):
    """The room is being transcribed: captions will follow (sent to everyone, and to late joiners)."""

    type: ClassVar[str] = "transcription_started"
    room: str
    transcription_id: str
    language: str


@dataclass(frozen=True)
class TranscriptionStopped(Event):
    """Captions ended: ``stopped`` when asked, ``failed`` when the engine could not
    start or its process died (``message`` says why)."""

    type: ClassVar[str] = "transcription_stopped"
    room: str
    transcription_id: str
    language: str
    reason: Literal["stopped", "failed"]
    message: Optional[str] = None


@dataclass(frozen=True)
class Caption(Event):
    """What a participant said; times in seconds since the transcription started.
    A final caption replaces the partial ones of the same participant before it."""

    type: ClassVar[str] = "caption"
    participant_id: str
    text: str
    start: float
    end: float
    final: bool


#: Every event the core sends, in the order docs/protocol.md §7 lists them.
EVENTS: tuple[type[Event], ...] = (
    ParticipantJoined, ParticipantLeft, TrackPublished, TrackUnpublished, TrackMuted,
    SubscriberOffer, RoomUpdated, ParticipantUpdated, Data, ChatMessage, Reaction,
    HandRaised, SpeakersChanged, SlotsChanged, LayerChanged, SubscribedQualityUpdate,
    Leave, ParticipantState, Reconnect, ConnectionQuality, ServerLoad, RecordingStarted,
    RecordingStopped, TranscriptionStarted, TranscriptionStopped, Caption,
)
