"""Signaling protocol v1: every WebSocket message is one JSON object.

Client requests carry an ``id`` that the server's response echoes.  Server
events carry no ``id``.  Each message is a pydantic model in a discriminated
union on ``type``; docs/protocol.md documents them with examples.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1

RequestId = Union[int, str]
TrackSource = Literal["camera", "microphone", "screen_share", "unknown"]


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
    tracks: list[TrackInfo] = []


class PublishTrack(_Message):
    """What the client says about one send section of its publish offer."""

    mid: str
    source: TrackSource = "unknown"
    muted: bool = False


class SubscribedTrack(BaseModel):
    """Maps a subscriber-PC m-line (mid) to the published track it carries."""

    mid: str
    track_id: str
    participant_id: str
    kind: Literal["audio", "video"]


# --- client requests -------------------------------------------------------


class Join(_Message):
    type: Literal["join"]
    id: RequestId
    room: str = Field(min_length=1, max_length=128)
    name: str = Field(default="", max_length=128)
    version: int = PROTOCOL_VERSION
    auto_subscribe: bool = True


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


class Leave(_Message):
    type: Literal["leave"]
    id: RequestId


class Ping(_Message):
    type: Literal["ping"]
    id: RequestId


Request = Annotated[
    Union[
        Join,
        Publish,
        Unpublish,
        Mute,
        Trickle,
        Subscribe,
        Unsubscribe,
        SubscriberAnswer,
        Leave,
        Ping,
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


class LeaveEvent(_Message):
    """The server ends the session (kicked, server shutting down, ...)."""

    type: Literal["leave"] = "leave"
    reason: str


ServerMessage = Annotated[
    Union[
        JoinResponse,
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
        LeaveEvent,
    ],
    Field(discriminator="type"),
]
SERVER_MESSAGE_ADAPTER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
