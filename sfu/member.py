"""What a room needs of anyone on its roster.

Two kinds of member satisfy it: a :class:`~sfu.participant.Participant`,
served here (its client, peer connections and subscriptions are in this
process), and a :class:`~sfu.remote.RemoteParticipant`, served by another
worker of this node (issue 7): it is on the roster and its tracks can be
subscribed to here, but it receives nothing here. ``local`` says which.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from .events import Event
from .published_track import PublishedTrack


class Member(Protocol):
    id: str
    name: str
    #: Who the token says this is (else the id), and opaque metadata.
    identity: str
    metadata: str
    #: Never announced to the room (a recorder, an operator's monitor).
    hidden: bool
    hand_raised: bool
    #: Subscribed to every new track of the room (never for a remote member:
    #: it subscribes on its own worker).
    auto_subscribe: bool
    tracks: dict[str, PublishedTrack]
    #: Served by this process: True for a Participant, False for a
    #: RemoteParticipant (its own worker serves it).
    local: bool

    def info(self) -> dict:
        """Its entry in the roster (ParticipantInfo)."""

    def notify(self, event: Event) -> None:
        """Send an event to its client (a remote member's own worker does)."""

    def subscribe(self, track: PublishedTrack) -> None: ...

    def unsubscribe(self, track_id: str) -> None: ...

    def counters(self) -> Counter:
        """Its traffic counters in this process."""

    async def close(self) -> None: ...
