"""One send m-line per subscribed track: a subscriber's default way of
putting tracks on its PC (the other is sfu/slots.py).

Each subscription adds an m-line, and its end renegotiates it inactive.
M-lines are recycled: the next track of the same kind and codec reuses an
inactive one, carrying on the same SSRC and numbering, so churn does not
grow the SDP.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable, Optional

from .layer_selector import TrackSettings
from .published_track import PublishedTrack
from .send_lines import Slot

if TYPE_CHECKING:
    from .subscriber import Subscriber


class TrackLines:
    def __init__(self, subscriber: Subscriber) -> None:
        self._subscriber = subscriber
        self._by_track: dict[str, Slot] = {}

    def subscribed(self, track_id: str) -> bool:
        return track_id in self._by_track

    def subscribe(self, track: PublishedTrack) -> None:
        if track.id in self._by_track:
            return
        subscriber = self._subscriber
        key = _codec_key(track)
        slot = next(
            (s for s in subscriber.slots
             if s.track is None and s.reusable and s.kind == track.kind and s.codec_key == key),
            None,
        )
        downtrack = subscriber.new_downtrack(track)
        if slot is None:
            transceiver = subscriber.transport.add_sendonly(
                track.kind, track.codec, track.participant_id, track.id
            )
            slot = Slot(transceiver, track.kind, key)
            subscriber.slots.append(slot)
        else:
            downtrack.munger = slot.downtrack.munger  # same SSRC: keep numbering continuous
            subscriber.transport.reuse_sendonly(slot.transceiver, track.participant_id, track.id)
        slot.downtrack, slot.track, slot.bound = downtrack, track, False
        self._by_track[track.id] = slot
        track.add_downtrack(downtrack)
        subscriber.negotiate()

    def unsubscribe(self, track_id: str) -> None:
        slot = self._by_track.pop(track_id, None)
        if slot is None:
            return
        self._subscriber.end(slot)
        slot.bound = False
        slot.reusable = False
        self._subscriber.transport.deactivate(slot.transceiver)
        self._subscriber.negotiate()

    def subscriptions(self) -> list[tuple[PublishedTrack, TrackSettings]]:
        return [(s.track, s.downtrack.settings) for s in self._by_track.values()]

    def update_settings(self, track_id: str, settings: TrackSettings) -> bool:
        slot = self._by_track.get(track_id)
        if slot is None:
            return False
        self._subscriber.apply_settings(slot.downtrack, settings)
        return True

    def choose(self, ranked: Optional[list[str]] = None, speakers: Optional[list[str]] = None) -> None:
        """Camera video of other publishers is paused (not renegotiated);
        every subscribed audio track is forwarded, whoever speaks."""
        if ranked is None:
            return
        allowed = set(ranked)
        if allowed != self._subscriber.video_allowed:
            self._subscriber.video_allowed = allowed
            self._subscriber.allocate(time.monotonic())

    def offer_tracks(self, in_offer: Iterable[Slot]) -> list[dict]:
        return [
            {"mid": s.transceiver.mid, "track_id": s.track.id,
             "participant_id": s.track.participant_id, "kind": s.kind}
            for s in in_offer if s.track is not None
        ]

    def bind_negotiated(self, offered: dict) -> None:
        """Start the down-tracks the answered offer carried (and only those)."""
        subscriber = self._subscriber
        for slot in subscriber.slots:
            if id(slot) not in offered:
                continue  # added after that offer: the next one carries it
            if offered[id(slot)] is None:
                slot.reusable = slot.track is None  # its release is now negotiated
                continue
            if slot.track is not offered[id(slot)] or slot.bound:
                continue
            section = subscriber.transport.sent_section(slot.transceiver)
            if section is None:
                continue
            slot.bound = True
            subscriber.bind(slot, section)

    def close(self) -> None:
        self._by_track.clear()


def _codec_key(track: PublishedTrack) -> str:
    codec = track.codec
    params = ";".join(f"{k}={v}" for k, v in sorted(codec.parameters.items()) if k != "apt")
    return f"{codec.mime_type.lower()}/{codec.clock_rate}/{params}"
