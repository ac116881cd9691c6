"""The control messages of `pysfu serve --workers N`: JSON lines between the
supervisor (in the front process) and each worker, over the worker's stdin
and stdout, and between workers through the supervisor (``To``).

One pydantic model per message, a discriminated union on ``op``, as for the
signaling protocol (signaling/protocol/).  ``encode`` makes a line of a
message, ``decode`` reads one back.  Both ends are the same program, so
these lines are no public interface.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from sfu.media_section import CodecInfo

from ..config import ServerConfig
from ..protocol import ParticipantInfo, TrackInfo


class _Control(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- supervisor -> worker -------------------------------------------------------


class Start(_Control):
    """The first line a worker reads: its settings."""

    op: Literal["start"] = "start"
    config: ServerConfig
    #: Proves to the worker that a request comes from the front.
    front_secret: str


class Stop(_Control):
    """Drain (clients get ``leave``), then exit."""

    op: Literal["stop"] = "stop"
    grace: float


class Hosts(_Control):
    """Other workers host ``room`` too: meet them."""

    op: Literal["hosts"] = "hosts"
    room: str
    #: Worker index -> its relay port.
    workers: dict[int, int]


class WorkerGone(_Control):
    """A worker died (it is being restarted): forget its participants."""

    op: Literal["worker_gone"] = "worker_gone"
    worker: int


# --- worker -> worker, inside To --------------------------------------------------


class Peer(_Control):
    """The sender hosts ``room`` too, relaying on ``relay_port``."""

    op: Literal["peer"] = "peer"
    room: str
    worker: int
    relay_port: int


class PeerGone(_Control):
    """The sender hosts no participant of ``room`` any more."""

    op: Literal["peer_gone"] = "peer_gone"
    room: str
    worker: int


class RelayOpen(_Control):
    """Send ``track_id``'s packets to ``port``, numbered ``number``."""

    op: Literal["relay_open"] = "relay_open"
    room: str
    track_id: str
    port: int
    number: int


class ParticipantChanged(_Control):
    """One of the sender's participants, as it is now (joined or updated)."""

    event: Literal["participant"] = "participant"
    info: ParticipantInfo
    hidden: bool


class ParticipantGone(_Control):
    event: Literal["participant_left"] = "participant_left"
    id: str
    reason: str


class TrackAdded(_Control):
    """A track one of the sender's participants published."""

    event: Literal["track"] = "track"
    track: TrackInfo
    codec: CodecInfo
    rids: list[str]
    audio_level_id: Optional[int] = None


class TrackGone(_Control):
    event: Literal["track_removed"] = "track_removed"
    participant_id: str
    track_id: str


SpanChange = Annotated[
    Union[ParticipantChanged, ParticipantGone, TrackAdded, TrackGone], Field(discriminator="event")]


class SpanEvent(_Control):
    """A change of the sender's part of ``room``."""

    op: Literal["event"] = "event"
    room: str
    #: The sending worker's index and relay port.
    origin: int
    relay_port: int
    change: SpanChange


PeerMessage = Annotated[Union[Peer, PeerGone, RelayOpen, SpanEvent], Field(discriminator="op")]


# --- worker -> supervisor ---------------------------------------------------------


class Ready(_Control):
    op: Literal["ready"] = "ready"
    #: Its HTTP/WebSocket port on 127.0.0.1.
    port: int
    relay_port: int
    pid: int


class Load(_Control):
    """Sent every LOAD_EVERY seconds (signaling/scaling/worker.py)."""

    op: Literal["load"] = "load"
    #: Local participants by room (rooms with none left out).
    rooms: dict[str, int]
    packets_in: int
    packets_out: int


class To(_Control):
    """For the supervisor to pass on to worker ``worker``."""

    op: Literal["to"] = "to"
    worker: int
    msg: PeerMessage


#: What a worker reads after Start.
ToWorker = Annotated[Union[Stop, Hosts, WorkerGone, Peer, PeerGone, RelayOpen, SpanEvent], Field(discriminator="op")]
ToSupervisor = Annotated[Union[Ready, Load, To], Field(discriminator="op")]
TO_WORKER: TypeAdapter[ToWorker] = TypeAdapter(ToWorker)
TO_SUPERVISOR: TypeAdapter[ToSupervisor] = TypeAdapter(ToSupervisor)


def encode(message: _Control) -> bytes:
    return message.model_dump_json().encode() + b"\n"


def decode(adapter: TypeAdapter, line: bytes):
    """The message of one line (a ValidationError if it is none)."""
    return adapter.validate_json(line)
