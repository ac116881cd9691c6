"""Signaling protocol v1: every WebSocket message is one JSON object.

Client requests carry an ``id`` that the server's response echoes.  Server
events carry no ``id``.  Each message is a pydantic model in a discriminated
union on ``type``; docs/protocol.md documents them with examples.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

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


class RecordingStarted(_Message):
    """Someone started recording the room (sent to everyone in it)."""

    type: Literal["recording_started"] = "recording_started"
    room: str
    recording_id: str
    track_ids: list[str] = []


class RecordingStopped(_Message):
    """A recording of the room ended; its file is complete."""

    type: Literal["recording_stopped"] = "recording_stopped"
    room: str
    recording_id: str
    track_ids: list[str] = []


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


class TranscriptionStarted(_Message):
    """The room is being transcribed: captions will follow (sent to everyone, and to late joiners)."""

    type: Literal["transcription_started"] = "transcription_started"
    room: str
    transcription_id: str
    language: str


class TranscriptionStopped(_Message):
    """Captions ended: ``stopped`` when asked, ``failed`` when the engine could not
    start or its process died (``message`` says why)."""

    type: Literal["transcription_stopped"] = "transcription_stopped"
    room: str
    transcription_id: str
    language: str
    reason: Literal["stopped", "failed"]
    message: Optional[str] = None


class CaptionEvent(_Message):
    """What a participant said; times in seconds since the transcription started.
    A final caption replaces the partial ones of the same participant before it."""

    type: Literal["caption"] = "caption"
    participant_id: str
    text: str
    start: float
    end: float
    final: bool


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


class ParticipantJoined(_Message):
    type: Literal["participant_joined"] = "participant_joined"
    participant: ParticipantInfo


class ParticipantLeft(_Message):
    type: Literal["participant_left"] = "participant_left"
    participant_id: str
    reason: str = ""


class TrackPublished(_Message):
    type: Literal["track_published"] = "track_published"
    track: TrackInfo


class TrackUnpublished(_Message):
    type: Literal["track_unpublished"] = "track_unpublished"
    track_id: str
    participant_id: str


class TrackMuted(_Message):
    type: Literal["track_muted"] = "track_muted"
    track_id: str
    participant_id: str
    muted: bool


class SubscriberOffer(_Message):
    type: Literal["subscriber_offer"] = "subscriber_offer"
    sdp: str
    tracks: list[SubscribedTrack]


class SlotInfo(BaseModel):
    """What one slot m-line carries now (no ids: nothing)."""

    mid: str
    kind: Literal["audio", "video"]
    participant_id: Optional[str] = None
    track_id: Optional[str] = None


class SlotsChanged(_Message):
    """Slot subscribers only: every slot and its occupant, sent once the
    slots are negotiated and whenever an occupant changes (before its media)."""

    type: Literal["slots_changed"] = "slots_changed"
    slots: list[SlotInfo]


class LayerChanged(_Message):
    """The layer a subscriber now receives for a track ("off" when paused)."""

    type: Literal["layer_changed"] = "layer_changed"
    track_id: str
    quality: Literal["low", "medium", "high", "off"]
    rid: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None


class QualityEnabled(BaseModel):
    quality: Quality
    rid: str
    enabled: bool


class SubscribedQualityUpdate(_Message):
    """Dynacast: which simulcast layers of your track anyone receives."""

    type: Literal["subscribed_quality_update"] = "subscribed_quality_update"
    track_id: str
    qualities: list[QualityEnabled]


class LeaveEvent(_Message):
    """The server ends the session (kicked, server shutting down, ...)."""

    type: Literal["leave"] = "leave"
    reason: str


# --- operator events (admin API) --------------------------------------------


class RoomUpdated(_Message):
    """The room's metadata changed (admin API)."""

    type: Literal["room_updated"] = "room_updated"
    room: dict


class ParticipantUpdated(_Message):
    """A participant's name or metadata changed (admin API)."""

    type: Literal["participant_updated"] = "participant_updated"
    participant: ParticipantInfo


class DataEvent(_Message):
    """Data sent to the room by a participant (send_data) or the operator (admin API)."""

    type: Literal["data"] = "data"
    payload: str
    topic: str = ""
    #: The sender; absent when the server's operator sent it.
    participant_id: Optional[str] = None


# --- meeting events: chat, reactions, raise hand (issue 8) ------------------------


class ChatMessageEvent(ChatMessageInfo):
    """A chat message posted to the room (the sender gets it too)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["chat_message"] = "chat_message"


class ReactionEvent(_Message):
    """Someone reacted (the sender gets it too); nothing is kept."""

    type: Literal["reaction"] = "reaction"
    participant_id: str
    emoji: str
    ts: int


class HandRaised(_Message):
    """Someone raised or lowered their hand (the sender gets it too)."""

    type: Literal["hand_raised"] = "hand_raised"
    participant_id: str
    raised: bool


# ------------------------------------------------------------------------------


# --- speaker detection (issue 4) ----------------------------------------------
#
# From the RFC 6464 audio-level header extension of published audio (nothing
# is decoded); see sfu/speaker.py for the smoothing and hysteresis.


class SpeakerInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    participant_id: str
    #: Smoothed linear amplitude, 0..1 (1.0 = full scale, 0.1 = -20 dBov).
    level: float = Field(ge=0, le=1)
    #: Present (true) on the dominant speaker, who is always listed first.
    dominant: Optional[bool] = None


class SpeakersChanged(_Message):
    """The active speakers changed (sent to everyone, at most twice a second)."""

    type: Literal["speakers_changed"] = "speakers_changed"
    #: Active speakers, dominant first, then loudest first; empty when silent.
    speakers: list[SpeakerInfo]


# ------------------------------------------------------------------------------


# --- reconnect and resume; connection quality (issue 6) -------------------------


class ParticipantState(_Message):
    """Someone's connection dropped ("reconnecting": keep the tile, it may
    come back) or it resumed ("active")."""

    type: Literal["participant_state"] = "participant_state"
    participant_id: str
    state: ParticipantStateName


class ReconnectEvent(_Message):
    """To the dropped client itself, when the server saw its media connection
    fail: the socket closes next; ``resume`` within ``grace`` seconds."""

    type: Literal["reconnect"] = "reconnect"
    reason: str
    grace: float


class QualityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    participant_id: str
    quality: QualityName
    #: The worst figures behind it (percent, milliseconds), when measured.
    upstream_loss: Optional[float] = None
    downstream_loss: Optional[float] = None
    rtt_ms: Optional[float] = None
    jitter_ms: Optional[float] = None


class ConnectionQuality(_Message):
    """Participants whose connection quality changed (yours included)."""

    type: Literal["connection_quality"] = "connection_quality"
    updates: list[QualityUpdate]


# ------------------------------------------------------------------------------


ServerMessage = Annotated[
    Union[
        JoinResponse,
        Redirect,
        PublishResponse,
        Ok,
        Pong,
        Error,
        ParticipantJoined,
        ParticipantLeft,
        TrackPublished,
        TrackUnpublished,
        TrackMuted,
        SubscriberOffer,
        LayerChanged,
        SubscribedQualityUpdate,
        LeaveEvent,
        ChatMessageEvent,
        ReactionEvent,
        HandRaised,
        RecordingResponse,
        RecordingStarted,
        RecordingStopped,
        SpeakersChanged,
        ParticipantState,
        ReconnectEvent,
        ConnectionQuality,
        SlotsChanged,
        TranscriptionResponse,
        TranscriptionStarted,
        TranscriptionStopped,
        CaptionEvent,
    ],
    Field(discriminator="type"),
]
SERVER_MESSAGE_ADAPTER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


#: Close codes a client sends when it ends its session (normal closure, going
#: away). A dropped connection has none (1006); pysfu.js closes with DROPPED
#: when it goes on to resume, and the front relays a drop to a worker so.
CLIENT_LEFT = (1000, 1001)
DROPPED = 4000
