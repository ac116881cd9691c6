"""The shapes that requests, responses and events share (a track, a
participant, a recording...), and the base of every message."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Self, Union

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1

#: Longest string ``id`` a request may carry (longer: ``bad_message``); an
#: integer id must be a safe JavaScript integer.  The server echoes ids.
MAX_ID_CHARS = 64
MAX_ID = 2**53 - 1
RequestId = Union[Annotated[int, Field(ge=-MAX_ID, le=MAX_ID)], Annotated[str, Field(max_length=MAX_ID_CHARS)]]
TrackSource = Literal["camera", "microphone", "screen_share", "unknown"]
ParticipantStateName = Literal["active", "reconnecting"]
QualityName = Literal["excellent", "good", "poor", "lost"]


def request_id_of(data: Any) -> Optional[RequestId]:
    """The id to echo in an answer about ``data`` (a message read as JSON,
    maybe not a request): its valid request id, or None."""
    request_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
        return None
    if isinstance(request_id, str) and len(request_id) > MAX_ID_CHARS:
        return None
    if isinstance(request_id, int) and abs(request_id) > MAX_ID:
        return None
    return request_id
#: A simulcast layer by name (issue 3).
Quality = Literal["low", "medium", "high"]
#: What a recording makes (``start_recording``, docs/protocol.md).
RecordingKind = Literal["composite", "audio", "tracks"]
#: A language as Whisper names it: ISO 639-1 ("en", "fr"), a few 639-3 ("haw").
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]


class Message(BaseModel):
    """A whole WebSocket message: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


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


class ChatMessageInfo(BaseModel):
    """One chat message, as in ``chat_message`` and ``join_response.chat_history``."""

    #: Server-assigned message id ("CM_..."), not a request id.
    id: str
    participant_id: str
    name: str
    text: str
    #: When the server received it: Unix time in milliseconds.
    ts: int


class RecordingInfo(BaseModel):
    """A recording just started, for the roomAdmin who started it (so ``path``
    included); the admin API answers with it too, adding a few fields."""

    recording_id: str
    path: str
    track_ids: list[str]
    kind: str = "tracks"

    @classmethod
    def of(cls, recording: dict) -> Self:
        """From ``Recording.info()``, whose ``id`` is the recording_id (what
        the model has no field for is left out)."""
        return cls(recording_id=recording["id"], **recording)


class TranscriptionInfo(BaseModel):
    """A transcription just started; the admin API answers with it too, adding a few fields."""

    transcription_id: str
    language: str


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
