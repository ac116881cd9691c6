"""What a client sends: one model per request, each with the ``id`` its
answer echoes, and ``REQUEST_ADAPTER`` reading any of them by ``type``."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from sfu.slots import MAX_AUDIO_SLOTS, MAX_VIDEO_SLOTS

from .models import PROTOCOL_VERSION, Language, Message, Quality, RecordingKind, RequestId, TrackSource

# --- joining ----------------------------------------------------------------


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


class Join(Message):
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


class Resume(Message):
    """Take your participant back after a dropped connection, with the
    ``resume_token`` of your last join_response (good for one use)."""

    type: Literal["resume"]
    id: RequestId
    room: str = Field(min_length=1, max_length=128)
    token: str = Field(min_length=1, max_length=1024)
    version: int = PROTOCOL_VERSION


class RefreshToken(Message):
    """A new access token for this participant (same identity, room and
    ``hidden`` grant), before the one it joined with expires: ``resume`` is
    refused after the token's ``exp``.  Its grants apply to later requests."""

    type: Literal["refresh_token"]
    id: RequestId
    token: str = Field(min_length=1, max_length=8192)


class Leave(Message):
    type: Literal["leave"]
    id: RequestId


class Ping(Message):
    type: Literal["ping"]
    id: RequestId


# --- publishing -------------------------------------------------------------


class PublishTrack(Message):
    """What the client says about one send section of its publish offer."""

    mid: str
    source: TrackSource = "unknown"
    muted: bool = False
    #: After a resume: the published track this m-line carries on (its id
    #: stays, its subscribers keep receiving it).  Absent: a new track.
    track_id: Optional[str] = Field(default=None, max_length=64)


class Publish(Message):
    type: Literal["publish"]
    id: RequestId
    sdp: str
    tracks: list[PublishTrack] = []


class Unpublish(Message):
    type: Literal["unpublish"]
    id: RequestId
    track_id: str


class Mute(Message):
    type: Literal["mute"]
    id: RequestId
    track_id: str
    muted: bool


class Trickle(Message):
    type: Literal["trickle"]
    id: RequestId
    target: Literal["publisher", "subscriber"]
    candidate: str
    sdp_mid: Optional[str] = None
    sdp_mline_index: Optional[int] = None


# --- subscribing ------------------------------------------------------------


class Subscribe(Message):
    type: Literal["subscribe"]
    id: RequestId
    track_ids: list[str] = Field(min_length=1)


class Unsubscribe(Message):
    type: Literal["unsubscribe"]
    id: RequestId
    track_ids: list[str] = Field(min_length=1)


class SubscriberAnswer(Message):
    type: Literal["subscriber_answer"]
    id: RequestId
    sdp: str


class UpdateTrackSettings(Message):
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


class SetPins(Message):
    """Participants whose camera you always want among your last-N (replaces
    the previous pins; ids not in the room are ignored)."""

    type: Literal["set_pins"]
    id: RequestId
    participant_ids: list[str] = Field(default_factory=list, max_length=100)


# --- data and meeting features: chat, reactions, raise hand -------------------
#
# All of them need the canPublishData grant.  The room keeps its last chat
# messages (sfu/meeting.py CHAT_HISTORY); join_response carries them.

CHAT_MAX_CHARS = 2000
REACTION_MAX_CHARS = 32


class SendData(Message):
    """Send a ``data`` event to the room (needs the canPublishData grant)."""

    type: Literal["send_data"]
    id: RequestId
    payload: str = Field(max_length=65536)
    topic: str = Field(default="", max_length=256)
    #: Only these identities get it; empty: everyone else in the room.
    destination_identities: list[str] = []


def _not_blank(what: str) -> AfterValidator:
    """Refuses a string of white space only, as ``what``."""

    def check(text: str) -> str:
        if not text.strip():
            raise ValueError(f"{what} cannot be blank")
        return text

    return AfterValidator(check)


class Chat(Message):
    """Post a chat message to the room: everyone (you too) gets ``chat_message``."""

    type: Literal["chat"]
    id: RequestId
    text: Annotated[str, Field(min_length=1, max_length=CHAT_MAX_CHARS), _not_blank("a chat message")]


class Reaction(Message):
    """A short-lived reaction (an emoji): everyone (you too) gets ``reaction``."""

    type: Literal["reaction"]
    id: RequestId
    emoji: Annotated[str, Field(min_length=1, max_length=REACTION_MAX_CHARS), _not_blank("a reaction")]


class RaiseHand(Message):
    """Raise or lower your hand: everyone (you too) gets ``hand_raised``."""

    type: Literal["raise_hand"]
    id: RequestId
    raised: bool


# --- recording and transcription (roomAdmin) ----------------------------------


class StartRecording(Message):
    """Record the room; roomAdmin. ``kind`` "composite" (the default): the
    meeting as one MP4; "tracks": the tracks (or only ``track_ids``) into one
    WebM/Matroska without transcoding (the default when ``track_ids`` is given)."""

    type: Literal["start_recording"]
    id: RequestId
    kind: Optional[RecordingKind] = None
    track_ids: Optional[list[str]] = None


class StopRecording(Message):
    """Stop one recording (all of the room's when ``recording_id`` is absent); roomAdmin."""

    type: Literal["stop_recording"]
    id: RequestId
    recording_id: Optional[str] = None


class StartTranscription(Message):
    """Caption the room's speech (everyone sees ``caption`` events); roomAdmin."""

    type: Literal["start_transcription"]
    id: RequestId
    #: The room's spoken language; absent: the server's transcription_language.
    language: Optional[Language] = None


class StopTranscription(Message):
    """Stop captioning the room; the transcript is complete when the answer comes; roomAdmin."""

    type: Literal["stop_transcription"]
    id: RequestId


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
