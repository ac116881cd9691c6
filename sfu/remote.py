"""A participant connected to another worker of this node, as seen by the
part of its room that lives here (issue 7): it is on the roster, its
tracks are subscribable (their packets come over the relay link, see
sfu/relay.py), and it receives nothing here: its own worker serves it.
It is a room member (sfu/member.py) with ``local`` False."""

from __future__ import annotations

from collections import Counter

from .events import Event
from .published_track import PublishedTrack


class RemoteParticipant:
    local = False
    auto_subscribe = False

    def __init__(self, info: dict, hidden: bool, worker: int) -> None:
        self.id: str = info["id"]
        self.worker = worker
        self.hidden = hidden
        self.tracks: dict[str, PublishedTrack] = {}
        self.closed = False
        self.update(info)

    def update(self, info: dict) -> None:
        self.name = info.get("name", "")
        self.identity = info.get("identity", self.id)
        self.metadata = info.get("metadata", "")
        self.hand_raised = info.get("hand_raised", False)

    def info(self) -> dict:
        return {
            "id": self.id, "name": self.name, "identity": self.identity, "metadata": self.metadata,
            "tracks": [t.info() for t in self.tracks.values()],
            "hand_raised": self.hand_raised,
        }

    # Its own worker notifies its client, subscribes it and counts its
    # traffic: here, these do nothing.

    def notify(self, event: Event) -> None:
        pass

    def subscribe(self, track: PublishedTrack) -> None:
        pass

    def unsubscribe(self, track_id: str) -> None:
        pass

    def counters(self) -> Counter:
        return Counter()

    async def close(self) -> None:
        self.closed = True
