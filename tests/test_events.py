"""The server's messages agree everywhere they are written down.

sfu/events.py defines each core event once; signaling/protocol/events.py builds
the wire models from it.  These tests hold the other copies to it: the
browser client's dispatch table (static/pysfu.js, whose parts are in
static/client/), the protocol document (docs/protocol.md: a heading per
message, a field table per event), and the JSON every client has been seeing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from sfu import events
from signaling import protocol as p
from signaling import session

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "protocol.md").read_text()
#: The browser client: the facade and its parts.
JS_FILES = [ROOT / "static" / "pysfu.js", *sorted((ROOT / "static" / "client").glob("*.js"))]
JS = "\n".join(path.read_text() for path in JS_FILES)


def server_messages() -> list[type]:
    """The models of the ServerMessage union."""
    union = typing.get_args(p.ServerMessage)[0]
    return list(typing.get_args(union))


def type_of(model: type) -> str:
    return model.model_fields["type"].default


def is_response(model: type) -> bool:
    return model not in p.EVENT_MESSAGES.values()


def event_fields(event: type[events.Event]) -> list[str]:
    return [f.name for f in dataclasses.fields(event)]


# --- static/pysfu.js and static/client/ ------------------------------------------


def js_dispatch_table() -> set[str]:
    """The message types ``_onEvent`` has a handler for."""
    match = re.search(r"_onEvent\(msg\) \{\s*const handler = \{(.*?)\n\s*\}\[msg\.type\];", JS, re.S)
    assert match, "static/pysfu.js, static/client/: the _onEvent dispatch table was not found"
    return set(re.findall(r"^\s*(\w+):", match.group(1), re.M))


# --- docs/protocol.md ---------------------------------------------------------


def doc_part(number: int) -> str:
    """The text of "## <number>. ..." up to the next "## "."""
    match = re.search(rf"^## {number}\. .*?(?=^## )", DOC, re.S | re.M)
    assert match, f"docs/protocol.md has no part {number}"
    return match.group(0)


def doc_sections(part: str) -> dict[str, str]:
    """Each "### `a` / `b` (event)" heading's text, under each name it gives."""
    sections = {}
    for match in re.finditer(r"^### (.*?)\n(.*?)(?=^### |\Z)", part, re.S | re.M):
        for name in re.findall(r"`(\w+)`", match.group(1)):
            sections[name] = match.group(1) + "\n" + match.group(2)
    return sections


def doc_field_table(section: str) -> set[str] | None:
    """The field names of a section's first "| Field | Type | ..." table
    ("`a`, `b`" rows give two), without ``type``; None when it has none."""
    match = re.search(r"^\| Field \|.*\n\|[- |]+\n((?:\|.*\n?)*)", section, re.M)
    if match is None:
        return None
    names = set()
    for row in match.group(1).splitlines():
        first_cell = row.split("|")[1]
        names.update(re.findall(r"`(\w+)`", first_cell))
    return names - {"type"}


def doc_table(text: str, header: str) -> str:
    """The table of ``text`` under ``header``, up to the blank line after it."""
    assert header in text, header
    return text.split(header, 1)[1].split("\n\n", 1)[0]


def doc_heading_names(section: str) -> list[str]:
    return re.findall(r"`(\w+)`", section.splitlines()[0])


EVENTS_PART = doc_sections(doc_part(7))
RESPONSES_PART = doc_sections(doc_part(6))
WHO_GETS_WHAT = set(re.findall(r"^\| `(\w+)` \|", doc_table(doc_part(7), "| Event | Sent to | When |"), re.M))


# --- the checks ---------------------------------------------------------------


def test_every_core_event_has_a_wire_model_with_its_fields():
    assert set(events.Event.__subclasses__()) == set(events.EVENTS), "an event class is missing from EVENTS"
    assert set(p.EVENT_MESSAGES) == set(events.EVENTS)
    for event, model in p.EVENT_MESSAGES.items():
        assert list(model.model_fields) == ["type", *event_fields(event)], event.__name__
        assert type_of(model) == event.type
    assert len({e.type for e in events.EVENTS}) == len(events.EVENTS), "two events share a type"


def test_server_message_union_holds_every_message_the_server_sends():
    """Requests have a ``type`` without a default; what the server sends has one."""
    sent = {model for model in vars(p).values()
            if isinstance(model, type) and issubclass(model, p.BaseModel) and "type" in model.model_fields
            and not model.model_fields["type"].is_required()}
    assert set(server_messages()) == sent
    assert len({type_of(model) for model in sent}) == len(sent)


def test_chat_history_entries_have_the_fields_of_chat_message_events():
    assert list(p.ChatMessageInfo.model_fields) == event_fields(events.ChatMessage)


@pytest.mark.parametrize("event", events.EVENTS, ids=lambda e: e.type)
def test_event_is_handled_by_pysfu_js(event):
    assert event.type in js_dispatch_table(), f"static/pysfu.js: _onEvent has no handler for {event.type!r}"


@pytest.mark.parametrize("event", events.EVENTS, ids=lambda e: e.type)
def test_event_is_documented_with_its_fields(event):
    assert event.type in WHO_GETS_WHAT, f"docs/protocol.md §7: {event.type!r} is not in the who-gets-what table"
    section = EVENTS_PART.get(event.type)
    assert section is not None, f"docs/protocol.md §7: no '### `{event.type}`' heading"
    documented = doc_field_table(section)
    assert documented is not None, f"docs/protocol.md §7 `{event.type}`: no '| Field | Type | Description |' table"
    by_type = {e.type: e for e in events.EVENTS}
    expected = {name for kind in doc_heading_names(section) if kind in by_type
                for name in event_fields(by_type[kind])}
    assert documented == expected, f"docs/protocol.md §7 `{event.type}`: fields {sorted(documented)}, " \
                                   f"sfu/events.py: {sorted(expected)}"


@pytest.mark.parametrize("model", [m for m in server_messages() if is_response(m)], ids=type_of)
def test_response_is_documented(model):
    kind = type_of(model)
    assert kind in RESPONSES_PART or f"`{kind}`" in DOC, f"docs/protocol.md: {kind!r} is not documented"
    if kind == "error":
        assert kind in js_dispatch_table()  # also sent without an id, as an event


@pytest.mark.parametrize("kind,text", [
    (kind, block) for kind, section in EVENTS_PART.items()
    for block in re.findall(r"```json\n(.*?)```", section, re.S)
    if json.loads(block)["type"] == kind
], ids=lambda v: v if len(v) < 40 else "")
def test_documented_event_examples_are_valid_messages(kind, text):
    p.SERVER_MESSAGE_ADAPTER.validate_python(json.loads(text))


# --- the JSON on the wire -------------------------------------------------------

TRACK = {"id": "TR_a", "participant_id": "PA_a", "kind": "video", "source": "camera", "muted": False,
         "codec": "video/VP8"}
LOCAL = {"id": "PA_a", "name": "alice", "identity": "alice", "metadata": "{}", "tracks": [TRACK],
         "hand_raised": False, "state": "active", "connection_quality": None}
#: A participant of another worker (sfu/remote.py): its info has no state.
REMOTE = {"id": "PA_b", "name": "bob", "identity": "bob", "metadata": "", "tracks": [], "hand_raised": True}
LOCAL_WIRE = {key: value for key, value in LOCAL.items() if value is not None}  # no nulls on the wire

#: What the core sends, and the JSON message clients have been getting for it
#: (each checked against the server before events were dataclasses).
WIRE = [
    (events.ParticipantJoined(LOCAL), {"type": "participant_joined", "participant": LOCAL_WIRE}),
    (events.ParticipantJoined(REMOTE), {"type": "participant_joined", "participant": {**REMOTE, "state": "active"}}),
    (events.ParticipantLeft("PA_a", "left"), {"type": "participant_left", "participant_id": "PA_a", "reason": "left"}),
    (events.TrackPublished(TRACK), {"type": "track_published", "track": TRACK}),
    (events.TrackUnpublished("TR_a", "PA_a"), {"type": "track_unpublished", "track_id": "TR_a", "participant_id": "PA_a"}),
    (events.TrackMuted("TR_a", "PA_a", True),
     {"type": "track_muted", "track_id": "TR_a", "participant_id": "PA_a", "muted": True}),
    (events.SubscriberOffer("v=0\r\n", [{"mid": "0", "track_id": "TR_a", "participant_id": "PA_a", "kind": "video"}]),
     {"type": "subscriber_offer", "sdp": "v=0\r\n",
      "tracks": [{"mid": "0", "track_id": "TR_a", "participant_id": "PA_a", "kind": "video"}]}),
    (events.RoomUpdated({"name": "demo", "metadata": "m"}),
     {"type": "room_updated", "room": {"name": "demo", "metadata": "m"}}),
    (events.ParticipantUpdated({**LOCAL, "connection_quality": "good"}),
     {"type": "participant_updated", "participant": {**LOCAL_WIRE, "connection_quality": "good"}}),
    (events.Data("hi"), {"type": "data", "payload": "hi", "topic": ""}),
    (events.Data("hi", "t", "PA_a"), {"type": "data", "payload": "hi", "topic": "t", "participant_id": "PA_a"}),
    (events.ChatMessage("CM_a", "PA_a", "alice", "<b>hé</b> 👍", 1767225600000),
     {"type": "chat_message", "id": "CM_a", "participant_id": "PA_a", "name": "alice", "text": "<b>hé</b> 👍",
      "ts": 1767225600000}),
    (events.Reaction("PA_a", "👍", 1767225601000),
     {"type": "reaction", "participant_id": "PA_a", "emoji": "👍", "ts": 1767225601000}),
    (events.HandRaised("PA_a", True), {"type": "hand_raised", "participant_id": "PA_a", "raised": True}),
    (events.SpeakersChanged([{"participant_id": "PA_a", "level": 0.1995, "dominant": True},
                             {"participant_id": "PA_b", "level": 0.0316}]),
     {"type": "speakers_changed", "speakers": [{"participant_id": "PA_a", "level": 0.1995, "dominant": True},
                                               {"participant_id": "PA_b", "level": 0.0316}]}),
    (events.SlotsChanged([{"mid": "0", "kind": "video", "participant_id": "PA_a", "track_id": "TR_a"},
                          {"mid": "1", "kind": "audio", "participant_id": None, "track_id": None}]),
     {"type": "slots_changed", "slots": [{"mid": "0", "kind": "video", "participant_id": "PA_a", "track_id": "TR_a"},
                                         {"mid": "1", "kind": "audio"}]}),
    (events.LayerChanged("TR_a", "medium", "h", 640, 360),
     {"type": "layer_changed", "track_id": "TR_a", "quality": "medium", "rid": "h", "width": 640, "height": 360}),
    (events.LayerChanged("TR_a", "off"), {"type": "layer_changed", "track_id": "TR_a", "quality": "off"}),
    (events.SubscribedQualityUpdate("TR_a", [{"quality": "low", "rid": "q", "enabled": True}]),
     {"type": "subscribed_quality_update", "track_id": "TR_a",
      "qualities": [{"quality": "low", "rid": "q", "enabled": True}]}),
    (events.Leave("removed"), {"type": "leave", "reason": "removed"}),
    (events.ParticipantState("PA_a", "reconnecting"),
     {"type": "participant_state", "participant_id": "PA_a", "state": "reconnecting"}),
    (events.Reconnect("connection_closed", 20.0), {"type": "reconnect", "reason": "connection_closed", "grace": 20.0}),
    (events.ConnectionQuality([{"participant_id": "PA_a", "quality": "poor", "downstream_loss": 24.6, "rtt_ms": 2.1}]),
     {"type": "connection_quality",
      "updates": [{"participant_id": "PA_a", "quality": "poor", "downstream_loss": 24.6, "rtt_ms": 2.1}]}),
    (events.ServerLoad(2, "lowest_layer_only"), {"type": "server_load", "level": 2, "shed": "lowest_layer_only"}),
    (events.ServerLoad(0, "none"), {"type": "server_load", "level": 0, "shed": "none"}),
    (events.RecordingStarted("demo", "RC_a", ["TR_a"]),
     {"type": "recording_started", "room": "demo", "recording_id": "RC_a", "track_ids": ["TR_a"]}),
    (events.RecordingStopped("demo", "RC_a"),
     {"type": "recording_stopped", "room": "demo", "recording_id": "RC_a", "track_ids": []}),
    (events.TranscriptionStarted("demo", "TS_a", "en"),
     {"type": "transcription_started", "room": "demo", "transcription_id": "TS_a", "language": "en"}),
    (events.TranscriptionStopped("demo", "TS_a", "en", "stopped"),
     {"type": "transcription_stopped", "room": "demo", "transcription_id": "TS_a", "language": "en",
      "reason": "stopped"}),
    (events.TranscriptionStopped("demo", "TS_a", "en", "failed", "the process died"),
     {"type": "transcription_stopped", "room": "demo", "transcription_id": "TS_a", "language": "en",
      "reason": "failed", "message": "the process died"}),
    (events.Caption("PA_a", "hello", 12.42, 15.51, True),
     {"type": "caption", "participant_id": "PA_a", "text": "hello", "start": 12.42, "end": 15.51, "final": True}),
]


@pytest.mark.parametrize("event,wire", WIRE, ids=lambda v: v.type if isinstance(v, events.Event) else "")
def test_event_goes_on_the_wire_as_before(event, wire):
    text, _ = session._event_text(event)  # as signaling/session.py sends it
    assert json.loads(text) == wire


def test_a_broadcast_builds_its_text_once_and_every_event_gets_its_own():
    """A room's broadcast hands one event to every session in turn."""
    for event, wire in WIRE + WIRE:
        text, droppable = session._event_text(event)
        assert session._event_text(event)[0] is text  # the second recipient's: not built again
        assert json.loads(text) == wire
        assert droppable == (event.type in session.DROPPABLE)


def test_every_event_has_a_wire_example():
    assert {type(event) for event, _ in WIRE} == set(events.EVENTS)


def test_a_core_event_filled_wrong_is_refused():
    with pytest.raises(ValidationError):
        p.event_message(events.ConnectionQuality([{"participant_id": "PA_a", "quality": "awful"}]))
