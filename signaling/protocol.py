"""Signaling protocol v1: every WebSocket message is one JSON object.

Client requests carry an ``id`` that the server's response echoes.  Server
events carry no ``id``.  Each message is a pydantic model in a discriminated
union on ``type``; docs/protocol.md documents them with examples.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Optional, Union, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, field_validator, model_validator

from sfu import events
from sfu.slots import MAX_AUDIO_SLOTS, MAX_VIDEO_SLOTS

PROTOCOL_VERSION = 1

#: Longest string ``id`` a request may carry (longer: ``bad_message``); an
#: integer id must be a safe JavaScript integer.  The server echoes ids.
MAX_ID_CHARS = 64
MAX_ID = 2**53 - 1
RequestId = Union[Annotated[int, Field(ge=-MAX_ID, le=MAX_ID)], Annotated[str, Field(max_length=MAX_ID_CHARS)]]
TrackSource = Literal["camera", "microphone", "screen_share", "unknown"]
ParticipantStateName = Literal["active", "reconnecting"]
QualityName = Literal["excellent", "good", "poor", "lost"]


class ErrorCode:
    """Machine-readable codes carried by ``error`` messages."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNSUPPORTED_VERSION = "unsupported_version"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    BAD_SDP = "bad_sdp"
    BAD_CANDIDATE = "bad_candidate"
    UNKNOWN_TRACK = "unknown_track"
    NOT_ALLOWED = "not_allowed"
    NO_OFFER_PENDING = "no_offer_pending"
    ROOM_FULL = "room_full"
    INTERNAL = "internal"

    # Tokens, permissions and limits (signaling/auth.py, signaling/limits.py).
    TOKEN_REQUIRED = "token_required"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    TOKEN_BAD_SIGNATURE = "token_bad_signature"
    TOKEN_UNKNOWN_KEY = "token_unknown_key"
    TOKEN_WRONG_ROOM = "token_wrong_room"
    PERMISSION_DENIED = "permission_denied"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    SDP_TOO_LARGE = "sdp_too_large"
    TOO_MANY_TRACKS = "too_many_tracks"
    TOO_MANY_JOINS = "too_many_joins"
    SERVER_DRAINING = "server_draining"
    #: HTTP answers to a WebSocket upgrade when the connection caps are reached.
    SERVER_FULL = "server_full"
    TOO_MANY_CONNECTIONS = "too_many_connections"

    # Many nodes through Redis (issue 7, signaling/cluster.py).
    CLUSTER_UNAVAILABLE = "cluster_unavailable"

    # Reconnect and resume (``resume``).
    RESUME_TOKEN_INVALID = "resume_token_invalid"
    RESUME_TOKEN_USED = "resume_token_used"
    RESUME_WRONG_ROOM = "resume_wrong_room"
    RESUME_EXPIRED = "resume_expired"

    # Recording.
    TOO_MANY_RECORDINGS = "too_many_recordings"

    # Transcription (the ``transcription`` extra).
    TRANSCRIPTION_UNAVAILABLE = "transcription_unavailable"
    TOO_MANY_TRANSCRIPTIONS = "too_many_transcriptions"
    ALREADY_TRANSCRIBING = "already_transcribing"
    NOT_TRANSCRIBING = "not_transcribing"


class CloseCode:
    """WebSocket close codes the server ends a session with (the close
    reason is the name in lower case)."""

    #: No ``join`` or ``resume`` within ``limits.join_timeout`` seconds.
    JOIN_TIMEOUT = 4001
    #: The client read too slowly: its messages overflowed ``limits.outbox_bytes``.
    SLOW_CONSUMER = 4002

    REASONS = {JOIN_TIMEOUT: "join_timeout", SLOW_CONSUMER: "slow_consumer"}


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- shared shapes --------------------------------------------------------


class TrackInfo(BaseModel):
    id: str
    participant_id: str
    kind: Literal["audio", "video"]
    source: TrackSource
    muted: bool = False
    codec: str = ""
    #: The publisher-PC m-line carrying the track; only in publish_response.
    mid: Optional[str] = None


class ParticipantInfo(BaseModel):
    id: str
    name: str
    #: From the access token (the participant id when the server runs open).
    identity: str = ""
    metadata: str = ""
    tracks: list[TrackInfo] = []
    #: Raise hand (issue 8): set with ``raise_hand``.
    hand_raised: bool = False
    #: "reconnecting" while its client is gone and may still resume.
    state: ParticipantStateName = "active"
    connection_quality: Optional[QualityName] = None


class PublishTrack(_Message):
    """What the client says about one send section of its publish offer."""

    mid: str
    source: TrackSource = "unknown"
    muted: bool = False
    #: After a resume: the published track this m-line carries on (its id
    #: stays, its subscribers keep receiving it).  Absent: a new track.
    track_id: Optional[str] = Field(default=None, max_length=64)


class SubscribedTrack(BaseModel):
    """Maps a subscriber-PC m-line (mid) to the published track it carries."""

    mid: str
    track_id: str
    participant_id: str
    kind: Literal["audio", "video"]


class IceServerInfo(BaseModel):
    """A STUN/TURN server for the client's peer connections (an RTCIceServer)."""

    urls: list[str]
    #: TURN only; minted per participant when the server shares a secret with it.
    username: Optional[str] = None
    credential: Optional[str] = None


# --- client requests -------------------------------------------------------


class SlotCounts(BaseModel):
    """Slot subscription (sfu/slots.py): this many video and audio m-lines on
    the subscriber PC, whatever the room's size; the server fills them."""

    model_config = ConfigDict(extra="forbid")
    video: int = Field(default=0, ge=0, le=MAX_VIDEO_SLOTS)
    audio: int = Field(default=0, ge=0, le=MAX_AUDIO_SLOTS)

    @model_validator(mode="after")
    def _some(self) -> "SlotCounts":
        if self.video + self.audio == 0:
            raise ValueError("ask for at least one slot")
        return self


class Join(_Message):
    type: Literal["join"]
    id: RequestId
    room: str = Field(min_length=1, max_length=128)
    name: str = Field(default="", max_length=128)
    version: int = PROTOCOL_VERSION
    auto_subscribe: bool = True
    #: Access token (JWT); required when the server has API keys.
    token: Optional[str] = Field(default=None, max_length=8192)
    #: Ask for slot subscription (see SlotCounts); absent: one m-line per track.
    slots: Optional[SlotCounts] = None


class Resume(_Message):
    """Take your participant back after a dropped connection, with the
    ``resume_token`` of your last join_response (good for one use)."""

    type: Literal["resume"]
    id: RequestId
    room: str = Field(min_length=1, max_length=128)
    token: str = Field(min_length=1, max_length=1024)
    version: int = PROTOCOL_VERSION


class RefreshToken(_Message):
    """A new access token for this participant (same identity, room and
    ``hidden`` grant), before the one it joined with expires: ``resume`` is
    refused after the token's ``exp``.  Its grants apply to later requests."""

    type: Literal["refresh_token"]
    id: RequestId
    token: str = Field(min_length=1, max_length=8192)


class Publish(_Message):
    type: Literal["publish"]
    id: RequestId
    sdp: str
    tracks: list[PublishTrack] = []


class Unpublish(_Message):
    type: Literal["unpublish"]
    id: RequestId
    track_id: str


class Mute(_Message):
    type: Literal["mute"]
    id: RequestId
    track_id: str
    muted: bool


class Trickle(_Message):
    type: Literal["trickle"]
    id: RequestId
    target: Literal["publisher", "subscriber"]
    candidate: str
    sdp_mid: Optional[str] = None
    sdp_mline_index: Optional[int] = None


class Subscribe(_Message):
    type: Literal["subscribe"]
    id: RequestId
    track_ids: list[str] = Field(min_length=1)


class Unsubscribe(_Message):
    type: Literal["unsubscribe"]
    id: RequestId
    track_ids: list[str] = Field(min_length=1)


class SubscriberAnswer(_Message):
    type: Literal["subscriber_answer"]
    id: RequestId
    sdp: str


# --- simulcast (issue 3) ---------------------------------------------------

Quality = Literal["low", "medium", "high"]


class UpdateTrackSettings(_Message):
    """How a subscriber wants one track: any of quality, max size/fps, paused.

    Absent fields mean "no limit"; adaptive stream sends the rendered tile
    size as max_width/max_height and paused=true for hidden tiles.
    """

    type: Literal["update_track_settings"]
    id: RequestId
    track_id: str
    quality: Optional[Quality] = None
    max_width: Optional[int] = Field(default=None, ge=0, le=16384)
    max_height: Optional[int] = Field(default=None, ge=0, le=16384)
    max_fps: Optional[int] = Field(default=None, ge=0, le=240)
    paused: Optional[bool] = None


# --- last-N (issue 4) --------------------------------------------------------


class SetPins(_Message):
    """Participants whose camera you always want among your last-N (replaces
    the previous pins; ids not in the room are ignored)."""

    type: Literal["set_pins"]
    id: RequestId
    participant_ids: list[str] = Field(default_factory=list, max_length=100)


class Leave(_Message):
    type: Literal["leave"]
    id: RequestId


class Ping(_Message):
    type: Literal["ping"]
    id: RequestId


class SendData(_Message):
    """Send a ``data`` event to the room (needs the canPublishData grant)."""

    type: Literal["send_data"]
    id: RequestId
    payload: str = Field(max_length=65536)
    topic: str = Field(default="", max_length=256)
    #: Only these identities get it; empty: everyone else in the room.
    destination_identities: list[str] = []


# --- meeting features: chat, reactions, raise hand (issue 8) -------------------
#
# All three need the canPublishData grant.  The server keeps the last
# CHAT_HISTORY chat messages of each room in memory; join_response carries them.

CHAT_MAX_CHARS = 2000
REACTION_MAX_CHARS = 32
CHAT_HISTORY = 100


class Chat(_Message):
    """Post a chat message to the room: everyone (you too) gets ``chat_message``."""

    type: Literal["chat"]
    id: RequestId
    text: str = Field(min_length=1, max_length=CHAT_MAX_CHARS)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("a chat message cannot be blank")
        return text


class Reaction(_Message):
    """A short-lived reaction (an emoji): everyone (you too) gets ``reaction``."""

    type: Literal["reaction"]
    id: RequestId
    emoji: str = Field(min_length=1, max_length=REACTION_MAX_CHARS)

    @field_validator("emoji")
    @classmethod
    def _not_blank(cls, emoji: str) -> str:
        if not emoji.strip():
            raise ValueError("a reaction cannot be blank")
        return emoji


class RaiseHand(_Message):
    """Raise or lower your hand: everyone (you too) gets ``hand_raised``."""

    type: Literal["raise_hand"]
    id: RequestId
    raised: bool


class ChatMessageInfo(BaseModel):
    """One chat message, as in ``chat_message`` and ``join_response.chat_history``."""

    #: Server-assigned message id ("CM_..."), not a request id.
    id: str
    participant_id: str
    name: str
    text: str
    #: When the server received it: Unix time in milliseconds.
    ts: int


# ------------------------------------------------------------------------------


# --- recording (issue 8) ----------------------------------------------------


class StartRecording(_Message):
    """Record the room; roomAdmin. ``kind`` "composite" (the default): the
    meeting as one MP4; "tracks": the tracks (or only ``track_ids``) into one
    WebM/Matroska without transcoding (the default when ``track_ids`` is given)."""

    type: Literal["start_recording"]
    id: RequestId
    kind: Optional[Literal["composite", "audio", "tracks"]] = None
    track_ids: Optional[list[str]] = None


class StopRecording(_Message):
    """Stop one recording (all of the room's when ``recording_id`` is absent); roomAdmin."""

    type: Literal["stop_recording"]
    id: RequestId
    recording_id: Optional[str] = None


class RecordingInfo(BaseModel):
    """Answered to the roomAdmin who started it, so ``path`` included."""

    recording_id: str
    path: str
    track_ids: list[str]
    kind: str = "tracks"


class RecordingResponse(_Message):
    type: Literal["recording_response"] = "recording_response"
    id: RequestId
    recording: RecordingInfo




# --- transcription: live captions and a transcript ------------------------------

#: A language as Whisper names it: ISO 639-1 ("en", "fr"), a few 639-3 ("haw").
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]


class StartTranscription(_Message):
    """Caption the room's speech (everyone sees ``caption`` events); roomAdmin."""

    type: Literal["start_transcription"]
    id: RequestId
    #: The room's spoken language; absent: the server's transcription_language.
    language: Optional[Language] = None


class StopTranscription(_Message):
    """Stop captioning the room; the transcript is complete when the answer comes; roomAdmin."""

    type: Literal["stop_transcription"]
    id: RequestId


class TranscriptionInfo(BaseModel):
    transcription_id: str
    language: str


class TranscriptionResponse(_Message):
    type: Literal["transcription_response"] = "transcription_response"
    id: RequestId
    transcription: TranscriptionInfo





Request = Annotated[
    Union[
        Join,
        Resume,
        RefreshToken,
        Publish,
        Unpublish,
        Mute,
        Trickle,
        Subscribe,
        Unsubscribe,
        SubscriberAnswer,
        UpdateTrackSettings,
        SetPins,
        Leave,
        Ping,
        SendData,
        Chat,
        Reaction,
        RaiseHand,
        StartRecording,
        StopRecording,
        StartTranscription,
        StopTranscription,
    ],
    Field(discriminator="type"),
]
REQUEST_ADAPTER: TypeAdapter[Request] = TypeAdapter(Request)


# --- server responses ------------------------------------------------------


class JoinResponse(_Message):
    type: Literal["join_response"] = "join_response"
    id: RequestId
    version: int = PROTOCOL_VERSION
    room: str
    participant: ParticipantInfo
    participants: list[ParticipantInfo]
    #: The room's last chat messages, oldest first (issue 8).
    chat_history: list[ChatMessageInfo] = []
    #: STUN/TURN servers for both peer connections (issue 6); empty when none are configured.
    ice_servers: list[IceServerInfo] = []
    #: Give it to ``resume`` to come back after a dropped connection (one use;
    #: every join_response brings a new one).
    resume_token: Optional[str] = None
    #: Seconds the server keeps a dropped participant waiting for its resume.
    resume_grace: Optional[float] = None
    #: True when answering ``resume``: same participant, fresh peer connections.
    resumed: bool = False
    #: Recordings of the room in progress (their ids): it is being recorded.
    recordings: list[str] = []


class Redirect(_Message):
    """The answer to ``join`` when another node owns the room (issue 7):
    connect to ``url`` and send the same join there, with ``ticket`` (when
    given) as its token."""

    type: Literal["redirect"] = "redirect"
    id: RequestId
    url: str
    #: The node that owns the room.
    node: str
    #: A short-lived token for this room; absent on an open server.
    ticket: Optional[str] = None


class PublishResponse(_Message):
    type: Literal["publish_response"] = "publish_response"
    id: RequestId
    sdp: str
    tracks: list[TrackInfo]


class Ok(_Message):
    type: Literal["ok"] = "ok"
    id: RequestId


class Pong(_Message):
    type: Literal["pong"] = "pong"
    id: RequestId


class Error(_Message):
    type: Literal["error"] = "error"
    id: Optional[RequestId] = None
    code: str
    message: str


# --- server events ---------------------------------------------------------
#
# One model per core event (sfu/events.py), built from its dataclass: the
# same fields, ``type`` first; the nested objects the core sends as dicts
# are checked against the shared shapes below.


class SlotInfo(BaseModel):
    """What one slot m-line carries now (no ids: nothing)."""

    mid: str
    kind: Literal["audio", "video"]
    participant_id: Optional[str] = None
    track_id: Optional[str] = None


class QualityEnabled(BaseModel):
    quality: Quality
    rid: str
    enabled: bool


class SpeakerInfo(BaseModel):
    """From the RFC 6464 audio-level header extension of published audio
    (nothing is decoded); see sfu/speaker.py for the smoothing and hysteresis."""

    model_config = ConfigDict(extra="forbid")
    participant_id: str
    #: Smoothed linear amplitude, 0..1 (1.0 = full scale, 0.1 = -20 dBov).
    level: float = Field(ge=0, le=1)
    #: Present (true) on the dominant speaker, who is always listed first.
    dominant: Optional[bool] = None


class QualityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    participant_id: str
    quality: QualityName
    #: The worst figures behind it (percent, milliseconds), when measured.
    upstream_loss: Optional[float] = None
    downstream_loss: Optional[float] = None
    rtt_ms: Optional[float] = None
    jitter_ms: Optional[float] = None


#: The wire model of each core event class.
EVENT_MESSAGES: dict[type[events.Event], type[_Message]] = {}


def _event_message(event: type[events.Event], name: str, **shapes: Any) -> type[_Message]:
    """The message model of a core event: its dataclass fields, after ``type``;
    ``shapes`` are the models of its fields that the core fills with dicts."""
    hints = get_type_hints(event)
    fields = {f.name: f for f in dataclasses.fields(event)}
    unknown = set(shapes) - set(fields)
    if unknown:
        raise TypeError(f"{event.__name__} has no field {sorted(unknown)}")
    definitions: dict[str, Any] = {"type": (Literal[event.type], event.type)}
    for field_name, spec in fields.items():
        if spec.default is not dataclasses.MISSING:
            default = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=spec.default_factory)
        else:
            default = ...
        definitions[field_name] = (shapes.get(field_name, hints[field_name]), default)
    model = create_model(name, __base__=_Message, __module__=__name__, __doc__=event.__doc__, **definitions)
    EVENT_MESSAGES[event] = model
    return model


def event_message(event: events.Event) -> _Message:
    """The message for a core event (a ValidationError if the core filled it wrong)."""
    return EVENT_MESSAGES[type(event)].model_validate(event, from_attributes=True)


ParticipantJoined = _event_message(events.ParticipantJoined, "ParticipantJoined", participant=ParticipantInfo)
ParticipantLeft = _event_message(events.ParticipantLeft, "ParticipantLeft")
TrackPublished = _event_message(events.TrackPublished, "TrackPublished", track=TrackInfo)
TrackUnpublished = _event_message(events.TrackUnpublished, "TrackUnpublished")
TrackMuted = _event_message(events.TrackMuted, "TrackMuted")
SubscriberOffer = _event_message(events.SubscriberOffer, "SubscriberOffer", tracks=list[SubscribedTrack])
RoomUpdated = _event_message(events.RoomUpdated, "RoomUpdated")
ParticipantUpdated = _event_message(events.ParticipantUpdated, "ParticipantUpdated", participant=ParticipantInfo)
DataEvent = _event_message(events.Data, "DataEvent")
ChatMessageEvent = _event_message(events.ChatMessage, "ChatMessageEvent")
ReactionEvent = _event_message(events.Reaction, "ReactionEvent")
HandRaised = _event_message(events.HandRaised, "HandRaised")
SpeakersChanged = _event_message(events.SpeakersChanged, "SpeakersChanged", speakers=list[SpeakerInfo])
SlotsChanged = _event_message(events.SlotsChanged, "SlotsChanged", slots=list[SlotInfo])
LayerChanged = _event_message(events.LayerChanged, "LayerChanged")
SubscribedQualityUpdate = _event_message(
    events.SubscribedQualityUpdate, "SubscribedQualityUpdate", qualities=list[QualityEnabled])
LeaveEvent = _event_message(events.Leave, "LeaveEvent")
ParticipantState = _event_message(events.ParticipantState, "ParticipantState")
ReconnectEvent = _event_message(events.Reconnect, "ReconnectEvent")
ConnectionQuality = _event_message(events.ConnectionQuality, "ConnectionQuality", updates=list[QualityUpdate])
RecordingStarted = _event_message(events.RecordingStarted, "RecordingStarted")
RecordingStopped = _event_message(events.RecordingStopped, "RecordingStopped")
TranscriptionStarted = _event_message(events.TranscriptionStarted, "TranscriptionStarted")
TranscriptionStopped = _event_message(events.TranscriptionStopped, "TranscriptionStopped")
CaptionEvent = _event_message(events.Caption, "CaptionEvent")


#: Every message the server sends: the responses, then the events.
ServerMessage = Annotated[
    Union[
        (JoinResponse, Redirect, PublishResponse, Ok, Pong, Error, RecordingResponse, TranscriptionResponse,
         *EVENT_MESSAGES.values())
    ],
    Field(discriminator="type"),
]
SERVER_MESSAGE_ADAPTER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


#: Close codes a client sends when it ends its session (normal closure, going
#: away). A dropped connection has none (1006); pysfu.js closes with DROPPED
#: when it goes on to resume, and the front relays a drop to a worker so.
CLIENT_LEFT = (1000, 1001)
DROPPED = 4000
