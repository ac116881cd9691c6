"""A subscriber PC's send m-lines, and the contract of the ways tracks are put on them.

A :class:`Subscriber` (sfu/subscriber.py) owns the PC, negotiation, RTCP and
bandwidth; which track goes on which m-line is its :class:`Lines` strategy:
:class:`~sfu.track_lines.TrackLines` (one m-line per subscribed track,
recycled; renegotiated as tracks come and go) or
:class:`~sfu.slots.FixedSlots` (a fixed set negotiated once, refilled from
last-N and the speakers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Protocol

from .downtrack import DownTrack
from .layer_selector import TrackSettings
from .published_track import PublishedTrack


@dataclass
class Slot:
    """A send m-line of the subscriber PC, and the down-track it carries."""

    transceiver: object
    kind: str
    codec_key: str
    downtrack: Optional[DownTrack] = None
    track: Optional[PublishedTrack] = None
    bound: bool = False
    #: False from release until the client has answered an offer showing the
    #: m-line inactive: only then may another track reuse it
    reusable: bool = True


class Lines(Protocol):
    """How a subscriber's subscriptions map to its send m-lines."""

    def subscribed(self, track_id: str) -> bool: ...

    def subscribe(self, track: PublishedTrack) -> None: ...

    def unsubscribe(self, track_id: str) -> None: ...

    def subscriptions(self) -> list[tuple[PublishedTrack, TrackSettings]]:
        """What is subscribed, and how (restored after a resume)."""

    def update_settings(self, track_id: str, settings: TrackSettings) -> bool:
        """Take a subscription's new settings; False if not subscribed."""

    def choose(self, ranked: Optional[list[str]] = None, speakers: Optional[list[str]] = None) -> None:
        """Last-N (whose camera video the subscriber may receive, most wanted
        first) and the current speakers (loudest first); None: unchanged.
        Both at once when both change: one refill, one allocation."""

    def offer_tracks(self, in_offer: Iterable[Slot]) -> list[dict]:
        """The subscriber_offer's ``tracks``: which track each m-line carries."""

    def bind_negotiated(self, offered: dict) -> None:
        """The client answered an offer (``offered``: id of each slot in it ->
        the track it then carried): start what it negotiated."""

    def close(self) -> None:
        """The subscriber is closed (its down-tracks are already ended)."""
