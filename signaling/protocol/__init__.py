"""Signaling protocol v1: every WebSocket message is one JSON object.

Client requests carry an ``id`` that the server's response echoes.  Server
events carry no ``id``.  Each message is a pydantic model in a discriminated
union on ``type``; docs/protocol.md documents them with examples.  By
direction:

- requests.py: what a client sends (``Request``, ``REQUEST_ADAPTER``);
- responses.py: what the server answers;
- events.py: what the server sends unasked, built from sfu/events.py, and
  ``ServerMessage``, every message the server sends;
- models.py: the shapes they share (also the admin API's), the base message;
- codes.py: error codes and WebSocket close codes.

Everything is importable from here: ``from signaling import protocol as p``.
"""

from pydantic import BaseModel

from .codes import CLIENT_LEFT, DROPPED, CloseCode, ErrorCode
from .events import (
    EVENT_MESSAGES,
    SERVER_MESSAGE_ADAPTER,
    CaptionEvent,
    ChatMessageEvent,
    ConnectionQuality,
    DataEvent,
    HandRaised,
    LayerChanged,
    LeaveEvent,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantState,
    ParticipantUpdated,
    ReactionEvent,
    ReconnectEvent,
    RecordingStarted,
    RecordingStopped,
    RoomUpdated,
    ServerLoad,
    ServerMessage,
    SlotsChanged,
    SpeakersChanged,
    SubscribedQualityUpdate,
    SubscriberOffer,
    TrackMuted,
    TrackPublished,
    TrackUnpublished,
    TranscriptionStarted,
    TranscriptionStopped,
    event_message,
)
from .models import (
    MAX_ID,
    MAX_ID_CHARS,
    PROTOCOL_VERSION,
    ChatMessageInfo,
    IceServerInfo,
    Language,
    Message,
    ParticipantInfo,
    ParticipantStateName,
    Quality,
    QualityEnabled,
    QualityName,
    QualityUpdate,
    RecordingInfo,
    RecordingKind,
    RequestId,
    SlotInfo,
    SpeakerInfo,
    SubscribedTrack,
    TrackInfo,
    TrackSource,
    TranscriptionInfo,
    request_id_of,
)
from .requests import (
    CHAT_MAX_CHARS,
    REACTION_MAX_CHARS,
    REQUEST_ADAPTER,
    Chat,
    Join,
    Leave,
    Mute,
    Ping,
    Publish,
    PublishTrack,
    RaiseHand,
    Reaction,
    RefreshToken,
    Request,
    Resume,
    SendData,
    SetPins,
    SlotCounts,
    StartRecording,
    StartTranscription,
    StopRecording,
    StopTranscription,
    Subscribe,
    SubscriberAnswer,
    Trickle,
    Unpublish,
    Unsubscribe,
    UpdateTrackSettings,
)
from .responses import (
    Error,
    JoinResponse,
    Ok,
    Pong,
    PublishResponse,
    RecordingResponse,
    Redirect,
    TranscriptionResponse,
)
