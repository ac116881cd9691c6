"""What the server answers a request with: one model per answer, carrying
the request's ``id``."""

from __future__ import annotations

from typing import Literal, Optional

from .models import (
    PROTOCOL_VERSION,
    ChatMessageInfo,
    IceServerInfo,
    Message,
    ParticipantInfo,
    RecordingInfo,
    RequestId,
    TrackInfo,
    TranscriptionInfo,
)


class JoinResponse(Message):
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


class Redirect(Message):
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


class PublishResponse(Message):
    type: Literal["publish_response"] = "publish_response"
    id: RequestId
    sdp: str
    tracks: list[TrackInfo]


class Ok(Message):
    type: Literal["ok"] = "ok"
    id: RequestId


class Pong(Message):
    type: Literal["pong"] = "pong"
    id: RequestId


class Error(Message):
    type: Literal["error"] = "error"
    id: Optional[RequestId] = None
    code: str
    message: str


class RecordingResponse(Message):
    type: Literal["recording_response"] = "recording_response"
    id: RequestId
    recording: RecordingInfo


class TranscriptionResponse(Message):
    type: Literal["transcription_response"] = "transcription_response"
    id: RequestId
    transcription: TranscriptionInfo


#: Every answer, in the order of ServerMessage.
RESPONSES = (JoinResponse, Redirect, PublishResponse, Ok, Pong, Error, RecordingResponse, TranscriptionResponse)
