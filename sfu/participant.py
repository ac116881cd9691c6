"""A participant of a room: one publisher PC and one subscriber PC.

The participant turns signaling calls into core actions and core changes
into events (``notify``); it knows nothing of WebSockets or JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Callable, Optional

from .config import SfuConfig
from .ids import new_id
from .layer_selector import TrackSettings
from .published_track import PublishedTrack
from .publisher import Publisher
from .slots import SlotSubscriber
from .subscriber import Subscriber

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict], None]
TICK = 0.25  # seconds between layer decisions
REPORT_EVERY = 4  # ticks between receiver reports to publishers


class Participant:
    remote = False  # sfu/remote.py: a participant of another worker
    def __init__(
        self, room: Room, name: str, config: SfuConfig, notify: EventSink, auto_subscribe: bool = True,
        slots: Optional[dict[str, int]] = None,
    ) -> None:
        self.id = new_id("PA")
        self.name = name
        self.room = room
        self.config = config
        self.notify = notify
        self.auto_subscribe = auto_subscribe
        #: Set by Room.join: who the token says this is (else the id), opaque
        #: metadata, and whether the room is told about this participant.
        self.identity = self.id
        self.metadata = ""
        self.hidden = False
        #: Raise hand (issue 8), changed through Room.raise_hand.
        self.hand_raised = False
        self.joined_at = time.monotonic()
        self.publisher = Publisher(self.id, config, self._transport_state)
        if slots:  # slot subscription (sfu/slots.py): a fixed set of m-lines
            self.subscriber = SlotSubscriber(
                self.id, config, self._send_offer, self._transport_state, self._layer_changed,
                slots, lambda mapping: self.notify("slots_changed", {"slots": mapping}),
            )
        else:
            self.subscriber = Subscriber(
                self.id, config, self._send_offer, self._transport_state, self._layer_changed
            )
        self.tracks: dict[str, PublishedTrack] = {}
        self.pins: list[str] = []  # participants whose camera this one pinned (last-N)
        self.closed = False
        self._tick_task = asyncio.ensure_future(self._tick())

    def info(self) -> dict:
        return {
            "id": self.id, "name": self.name, "identity": self.identity, "metadata": self.metadata,
            "tracks": [t.info() for t in self.tracks.values()],
            "hand_raised": self.hand_raised,
        }

    # --- publishing ---------------------------------------------------------

    async def publish(self, offer_sdp: str, declared: dict[str, tuple[str, bool]]) -> tuple[str, list[PublishedTrack]]:
        """Answer a publisher offer; new tracks are announced to the room."""
        answer, added, removed = await self.publisher.negotiate(offer_sdp, declared)
        for track in removed:
            self._drop_track(track)
        for track in added:
            track.on_dynacast = self._dynacast
            self.tracks[track.id] = track
            self.room.track_published(self, track)
        return answer, added

    def unpublish(self, track_id: str) -> bool:
        track = self.tracks.get(track_id)
        if track is None:
            return False
        self.publisher.remove(track)
        self._drop_track(track)
        return True

    def _drop_track(self, track: PublishedTrack) -> None:
        self.tracks.pop(track.id, None)
        self.room.track_unpublished(self, track)

    def set_muted(self, track_id: str, muted: bool) -> bool:
        track = self.tracks.get(track_id)
        if track is None:
            return False
        if track.muted != muted:
            track.muted = muted
            self.room.track_muted(self, track)
        return True

    # --- subscribing ----------------------------------------------------------

    def subscribe(self, track: PublishedTrack) -> None:
        if track.participant_id != self.id:
            self.subscriber.subscribe(track)

    def unsubscribe(self, track_id: str) -> None:
        self.subscriber.unsubscribe(track_id)

    def set_pins(self, participant_ids: list[str]) -> None:
        """Whose camera this participant always wants among its last-N."""
        self.pins = [p for p in participant_ids if p in self.room.participants and p != self.id]
        self.room.apply_last_n()

    def update_track_settings(self, track_id: str, settings: TrackSettings) -> bool:
        return self.subscriber.update_settings(track_id, settings)

    def _layer_changed(self, downtrack) -> None:
        layer = downtrack.current
        stream = downtrack.track.layers[layer] if layer >= 0 else None
        payload = {"track_id": downtrack.track_id, "quality": downtrack.track.quality_of(layer)}
        if downtrack.track.rid_of(layer):
            payload["rid"] = downtrack.track.rid_of(layer)
        if stream is not None and stream.width:
            payload.update(width=stream.width, height=stream.height)
        self.notify("layer_changed", payload)

    def _dynacast(self, track: PublishedTrack, qualities: list[dict]) -> None:
        self.notify("subscribed_quality_update", {"track_id": track.id, "qualities": qualities})

    def _send_offer(self, sdp: str, tracks: list[dict]) -> None:
        self.notify("subscriber_offer", {"sdp": sdp, "tracks": tracks})

    # --- lifecycle ------------------------------------------------------------

    def _transport_state(self, state: str) -> None:
        if state in ("failed", "closed") and not self.closed:
            log.info("participant %s: peer connection %s", self.id, state)
            reason = "connection_" + state
            self.notify("leave", {"reason": reason})
            asyncio.ensure_future(self.room.leave(self, reason=reason))

    async def _tick(self) -> None:
        count = 0
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            count += 1
            try:
                self.publisher.tick(now)
                self.subscriber.tick(now)
                if count % REPORT_EVERY == 0:
                    self.publisher.send_reports(now)
            except Exception:
                log.exception("participant %s: tick failed", self.id)

    def counters(self) -> Counter:
        """Traffic counters of this participant, keyed by metric and kind."""
        counts = Counter(self.publisher.gone)
        counts.update(self.subscriber.gone)
        for stream in self.publisher.streams:
            counts.update(stream.counters())
        for downtrack in self.subscriber.downtracks():
            counts.update(downtrack.counters())
        return counts

    async def close(self) -> None:
        """Free everything this participant holds (tracks, tasks, sockets)."""
        if self.closed:
            return
        self.closed = True
        self._tick_task.cancel()
        await asyncio.gather(self.publisher.close(), self.subscriber.close(), return_exceptions=True)
