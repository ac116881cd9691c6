"""A participant of a room: one publisher PC and one subscriber PC.

The participant turns signaling calls into core actions and core changes
into events (``notify``); it knows nothing of WebSockets or JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Optional

from . import events, ticker
from .config import SfuConfig
from .events import Event, EventSink
from .ids import new_id
from .layer_selector import TrackSettings
from .published_track import PublishedTrack
from .publisher import Publisher
from .quality import LOST, QualityMeter
from .subscriber import Subscriber

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger(__name__)

TICK = 0.25  # seconds between layer decisions
REPORT_EVERY = 4  # ticks between receiver reports to publishers
QUALITY_EVERY = 4  # ticks between connection quality evaluations

ACTIVE, RECONNECTING = "active", "reconnecting"


def _nobody(event: Event) -> None:
    """Where events go while a participant has no client (reconnecting)."""


class Participant:
    """A room member (sfu/member.py) served here."""

    local = True
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
        self.slots = slots
        self.subscriber = self._new_subscriber()
        self.tracks: dict[str, PublishedTrack] = {}
        self.pins: list[str] = []  # participants whose camera this one pinned (last-N)
        self.closed = False
        #: Reconnect and resume: "active", or "reconnecting" while its client is
        #: gone (for at most config.resume_grace seconds); ``generation`` counts
        #: resumes (a resume token is good for one generation only).
        self.state = ACTIVE
        self.generation = 0
        #: Opaque to the core: what the signaling layer keeps about this
        #: participant across its connections (its access grants).
        self.attachment: object = None
        self._resubscribe: dict[str, tuple[PublishedTrack, TrackSettings]] = {}
        self._grace_task: Optional[asyncio.Task] = None
        self._lock = asyncio.Lock()
        self.quality = QualityMeter()
        self._ticks = 0
        self._ticker = ticker.shared(TICK)
        self._ticker.add(self._tick)

    def _new_subscriber(self) -> Subscriber:
        return Subscriber(
            self.id, self.config, self._send_offer, self._transport_state, self._layer_changed,
            self.slots, lambda mapping: self.notify(events.SlotsChanged(mapping)),
        )

    def info(self) -> dict:
        return {
            "id": self.id, "name": self.name, "identity": self.identity, "metadata": self.metadata,
            "tracks": [t.info() for t in self.tracks.values()],
            "hand_raised": self.hand_raised,
            "state": self.state,
            "connection_quality": self.quality.quality,
        }

    # --- publishing ---------------------------------------------------------

    async def publish(
        self, offer_sdp: str, declared: dict[str, tuple[str, bool, Optional[str]]]
    ) -> tuple[str, list[PublishedTrack]]:
        """Answer a publisher offer; new tracks are announced to the room,
        republished ones (after a resume) carry on unannounced.  Returns the
        answer and the tracks it added or republished."""
        answer, added, removed, adopted = await self.publisher.negotiate(offer_sdp, declared)
        for track in removed:
            self._drop_track(track)
        for track in adopted:
            self.set_muted(track.id, declared[track.mid][1])
        for track in added:
            track.on_dynacast = self._dynacast
            self.tracks[track.id] = track
            self.room.track_published(self, track)
        return answer, adopted + added

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
        if track.participant_id == self.id:
            return
        if self.state == RECONNECTING:  # offered with the rest on resume
            self._resubscribe.setdefault(track.id, (track, TrackSettings()))
        else:
            self.subscriber.subscribe(track)

    def unsubscribe(self, track_id: str) -> None:
        self._resubscribe.pop(track_id, None)
        self.subscriber.unsubscribe(track_id)

    def set_pins(self, participant_ids: list[str]) -> None:
        """Whose camera this participant always wants among its last-N."""
        self.pins = [p for p in participant_ids if p in self.room.participants and p != self.id]
        self.room.apply_last_n(self)

    def update_track_settings(self, track_id: str, settings: TrackSettings) -> bool:
        return self.subscriber.update_settings(track_id, settings)

    def _layer_changed(self, downtrack) -> None:
        layer = downtrack.current
        stream = downtrack.track.layers[layer] if layer >= 0 else None
        sized = stream is not None and stream.width
        self.notify(events.LayerChanged(
            downtrack.track_id, downtrack.track.quality_of(layer), downtrack.track.rid_of(layer) or None,
            stream.width if sized else None, stream.height if sized else None,
        ))

    def _dynacast(self, track: PublishedTrack, qualities: list[dict]) -> None:
        self.notify(events.SubscribedQualityUpdate(track.id, qualities))

    def _send_offer(self, sdp: str, tracks: list[dict]) -> None:
        self.notify(events.SubscriberOffer(sdp, tracks))

    # --- lifecycle ------------------------------------------------------------

    def _transport_state(self, state: str) -> None:
        if state not in ("failed", "closed") or self.closed or self.state != ACTIVE:
            return  # (PCs closed on purpose while suspending report "closed" too)
        log.info("participant %s: peer connection %s", self.id, state)
        reason = "connection_" + state
        if self.config.resume_grace > 0:
            asyncio.ensure_future(self.room.suspend(self, reason))
        else:
            self.notify(events.Leave(reason))
            asyncio.ensure_future(self.room.leave(self, reason=reason))

    # --- reconnect and resume -------------------------------------------------

    async def suspend(self, reason: str) -> bool:
        """The client is gone: close both PCs but keep the place in the room,
        the published tracks (their subscribers wait) and the subscriptions,
        for ``resume_grace`` seconds.  False if not active."""
        async with self._lock:
            if self.state != ACTIVE or self.closed:
                return False
            self.state = RECONNECTING
            notify, self.notify = self.notify, _nobody
            notify(events.Reconnect(reason, self.config.resume_grace))
            self._resubscribe = {t.id: (t, settings) for t, settings in self.subscriber.subscriptions()}
            await asyncio.gather(self.publisher.suspend(), self.subscriber.close(), return_exceptions=True)
            if self.closed:  # it left meanwhile: nothing to wait for
                return False
            self._grace_task = asyncio.ensure_future(self._expire(reason))
            log.info("participant %s: reconnecting (%s)", self.id, reason)
            return True

    async def _expire(self, reason: str) -> None:
        await asyncio.sleep(self.config.resume_grace)
        self._grace_task = None  # leave() must not cancel the task running it
        if self.state != RECONNECTING:
            return
        log.info("participant %s: not back within %.1f s", self.id, self.config.resume_grace)
        await self.room.leave(self, reason)

    async def resume(self, notify: EventSink) -> bool:
        """A client took this participant over: fresh PCs; the tracks wait to
        be republished, the subscriptions are offered on the new subscriber PC.
        False if the participant is no longer resumable."""
        async with self._lock:
            if self.state != RECONNECTING or self.closed:
                return False
            self._cancel_grace()
            self.state = ACTIVE
            self.generation += 1
            self.notify = notify
            self.publisher.restart()
            gone = self.subscriber.gone
            self.subscriber = self._new_subscriber()
            self.subscriber.gone.update(gone)
            self.subscriber.video_allowed = None
            saved, self._resubscribe = self._resubscribe, {}
            for track, settings in saved.values():
                self.subscriber.subscribe(track)
                self.subscriber.update_settings(track.id, settings)
            return True

    def _cancel_grace(self) -> None:
        if self._grace_task is not None:
            self._grace_task.cancel()
            self._grace_task = None

    def _tick(self, now: float) -> None:
        """Every TICK (sfu/ticker.py: one timer for every participant)."""
        self._ticks += 1
        try:
            self.publisher.tick(now)
            self.subscriber.tick(now)
            if self._ticks % REPORT_EVERY == 0:
                self.publisher.send_reports(now)
            if self._ticks % QUALITY_EVERY == 0:
                self._rate_quality(now)
        except Exception:
            log.exception("participant %s: tick failed", self.id)

    def _rate_quality(self, now: float) -> None:
        if self.state == RECONNECTING:
            changed = self.quality.judge(LOST)
        else:
            changed = self.quality.evaluate(now, self.tracks.values(), self.subscriber.downtracks())
        if changed is not None:
            self.room.quality_changed(self)

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
        self._ticker.discard(self._tick)
        self._cancel_grace()
        self.notify = _nobody
        await asyncio.gather(self.publisher.close(), self.subscriber.close(), return_exceptions=True)
