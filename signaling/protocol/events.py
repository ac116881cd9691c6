"""What the server sends unasked: one model per core event (sfu/events.py),
built from its dataclass, and ``ServerMessage``, every message the server
sends."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Union, get_type_hints

from pydantic import Field, TypeAdapter, create_model

from sfu import events

from .models import (
    Message,
    ParticipantInfo,
    QualityEnabled,
    QualityUpdate,
    SlotInfo,
    SpeakerInfo,
    SubscribedTrack,
    TrackInfo,
)
from .responses import RESPONSES

#: The wire model of each core event class.
EVENT_MESSAGES: dict[type[events.Event], type[Message]] = {}


def _event_message(event: type[events.Event], name: str, **shapes: Any) -> type[Message]:
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
    model = create_model(name, __base__=Message, __module__=__name__, __doc__=event.__doc__, **definitions)
    EVENT_MESSAGES[event] = model
    return model


def event_message(event: events.Event) -> Message:
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
ServerLoad = _event_message(events.ServerLoad, "ServerLoad")
RecordingStarted = _event_message(events.RecordingStarted, "RecordingStarted")
RecordingStopped = _event_message(events.RecordingStopped, "RecordingStopped")
TranscriptionStarted = _event_message(events.TranscriptionStarted, "TranscriptionStarted")
TranscriptionStopped = _event_message(events.TranscriptionStopped, "TranscriptionStopped")
CaptionEvent = _event_message(events.Caption, "CaptionEvent")


#: Every message the server sends: the responses, then the events.
ServerMessage = Annotated[Union[(*RESPONSES, *EVENT_MESSAGES.values())], Field(discriminator="type")]
SERVER_MESSAGE_ADAPTER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
