"""The subscribing side of a participant: its subscriber peer connection
(the server offers, the client answers), its down-tracks, the subscriber's
RTCP (NACK, PLI, FIR, RR, REMB) and the sharing of its downlink between the
down-tracks.

Which track goes on which send m-line is a strategy (sfu/send_lines.py),
chosen at join: one m-line per track (sfu/track_lines.py), or a fixed set of
slots (sfu/slots.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Callable, Iterable, Optional

from . import rtcp
from .allocator import Allocator, Demand
from .config import SfuConfig
from .downlink_estimate import DownlinkEstimate
from .downtrack import DownTrack
from .layer_selector import (
    OFF, TrackSettings, select_layer, temporal_limit, wanted_layer, wanted_more,
)
from .load_manager import NORMAL, Shed
from .published_track import PublishedTrack
from .send_lines import Lines, Slot
from .slots import FixedSlots
from .track_lines import TrackLines
from .transport import PeerTransport

log = logging.getLogger(__name__)

REOFFERS = 1  # fresh offers sent after an unanswered one, before waiting for the client
BATCH_DELAY = 0.02  # changes within this window share one offer


class Subscriber:
    def __init__(
        self,
        participant_id: str,
        config: SfuConfig,
        send_offer: Callable[[str, list[dict]], None],
        on_state: Callable[[str], None],
        on_layer_changed: Callable[[DownTrack], None] = lambda downtrack: None,
        slots: Optional[dict[str, int]] = None,
        on_slots_changed: Callable[[list[dict]], None] = lambda mapping: None,
    ) -> None:
        """``slots``: how many video and audio slots (sfu/slots.py); None: one
        m-line per track."""
        self.participant_id = participant_id
        self.transport = PeerTransport(config.ice, lambda packet: None, self._on_rtcp, on_state)
        self._send_offer = send_offer
        self._on_layer_changed = on_layer_changed
        self.allocator = Allocator()
        self.downlink = DownlinkEstimate()
        self.video_allowed: Optional[set[str]] = None  # last-N; None: everyone
        #: Last-N order (publisher id -> place): short of bandwidth, the first
        #: get their video first, so the speaker's is the last to pause
        self._video_rank: dict[str, int] = {}
        #: What the server's load takes off the cameras of all but ``spared``
        self.shed: Shed = NORMAL
        self.spared: frozenset[str] = frozenset()
        self.slots: list[Slot] = []  # the send m-lines
        self._by_ssrc: dict[int, DownTrack] = {}
        self._task: Optional[asyncio.Task] = None
        self._again = False
        self._answer_timeout = config.answer_timeout
        #: The pending offer: its slots and the track each carried (None: answered)
        self._offered: Optional[dict[int, Optional[PublishedTrack]]] = None
        self._answered = asyncio.Event()
        self.gone: Counter = Counter()  # counters of down-tracks already ended
        self.offers_sent = 0
        self.offer_bytes = 0  # size of the last offer (its answer may be about as big)
        self.answer_timeouts = 0
        self.errors = 0
        self.lines: Lines = (
            FixedSlots(self, slots, on_slots_changed) if slots else TrackLines(self)
        )

    # --- subscriptions (what goes on which m-line: self.lines) ------------------

    def subscribed(self, track_id: str) -> bool:
        return self.lines.subscribed(track_id)

    def subscribe(self, track: PublishedTrack) -> None:
        self.lines.subscribe(track)

    def unsubscribe(self, track_id: str) -> None:
        self.lines.unsubscribe(track_id)

    def subscriptions(self) -> list[tuple[PublishedTrack, TrackSettings]]:
        """What this subscriber receives, and how (to restore after a resume)."""
        return self.lines.subscriptions()

    def downtracks(self) -> list[DownTrack]:
        return [s.downtrack for s in self.slots if s.track is not None and s.downtrack]

    # --- down-tracks (for self.lines) ---------------------------------------------

    def new_downtrack(self, track: PublishedTrack) -> DownTrack:
        downtrack = DownTrack(track, self.transport)
        downtrack.on_layer_changed = self._on_layer_changed
        return downtrack

    def bind(self, slot: Slot, section) -> None:
        """Start the slot's down-track on its negotiated m-line."""
        slot.downtrack.bind(section)
        self._by_ssrc[slot.downtrack.ssrc] = slot.downtrack

    def end(self, slot: Slot) -> None:
        """The one way a down-track ends (unsubscribed, its track unpublished,
        its slot given to another track, this subscriber closed): off its
        track, out of allocation and RTCP, its counters kept. It stays with
        the slot as the keeper of the m-line's SSRC numbering."""
        downtrack = slot.downtrack
        self.allocator.forget(downtrack)
        slot.track.remove_downtrack(downtrack)
        self.gone.update(downtrack.counters())
        self._by_ssrc.pop(downtrack.ssrc, None)
        slot.track = None

    # --- negotiation ----------------------------------------------------------

    def negotiate(self) -> None:
        """Ask for an offer; a burst of changes yields one, one at a time."""
        if self.transport.closed:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._negotiate())
        else:
            self._again = True

    async def _negotiate(self) -> None:
        await asyncio.sleep(BATCH_DELAY)
        unanswered = 0
        while not self.transport.closed:
            self._again = False
            await self._offer()
            if await self._answered_in_time():
                unanswered = 0
            else:
                # a lost or refused answer leaves the client out of step: a
                # fresh offer resyncs; past REOFFERS the offer stays pending (a
                # late answer still applies) until the next change offers again
                unanswered += 1
                self.answer_timeouts += 1
                log.warning("participant %s left a subscriber offer unanswered for %.0f s",
                            self.participant_id, self._answer_timeout)
                if unanswered > REOFFERS and not self._again:
                    return
                continue
            if not self._again:
                return

    async def _offer(self) -> None:
        sdp = await self.transport.create_offer()
        # a track subscribed while the offer was made has no m-line in it
        # yet (its mid is None): the next offer carries it (_again is set)
        mids = {line[6:].strip() for line in sdp.splitlines() if line.startswith("a=mid:")}
        in_offer = [slot for slot in self.slots if slot.transceiver.mid in mids]
        self._offered = {id(slot): slot.track for slot in in_offer}  # what this offer says
        self._answered.clear()
        self.offers_sent += 1
        self.offer_bytes = len(sdp)
        self._send_offer(sdp, self.lines.offer_tracks(in_offer))

    async def _answered_in_time(self) -> bool:
        try:
            await asyncio.wait_for(self._answered.wait(), self._answer_timeout)
            return True
        except asyncio.TimeoutError:
            return False

    @property
    def awaiting_answer(self) -> bool:
        return self._offered is not None

    async def accept_answer(self, sdp: str) -> None:
        """Apply the client's answer to the pending offer (raises SdpError),
        and start what it negotiated."""
        offered = self._offered
        await self.transport.accept_answer(sdp)
        if self._offered is offered:
            self._offered = None
            self._answered.set()
        if offered is not None:
            self.lines.bind_negotiated(offered)
            self.allocate(time.monotonic())
        if self._again and (self._task is None or self._task.done()):
            self.negotiate()  # changes made while a late answer was awaited

    # --- RTCP from the subscriber -------------------------------------------

    def _on_rtcp(self, packet: bytes) -> None:
        try:
            now = time.monotonic()
            for item in rtcp.parse(packet):
                self._handle_feedback(item, now)
        except Exception:
            self.errors += 1
            log.exception("subscriber %s: RTCP handling failed", self.participant_id)

    def _handle_feedback(self, item, now: float) -> None:
        if isinstance(item, rtcp.Nack):
            downtrack = self._by_ssrc.get(item.media_ssrc)
            if downtrack is not None:
                downtrack.on_nack(item.lost, now)
        elif isinstance(item, rtcp.Pli):
            downtrack = self._by_ssrc.get(item.media_ssrc)
            if downtrack is not None:
                downtrack.request_keyframe()
        elif isinstance(item, rtcp.Fir):
            for ssrc, _ in item.entries:
                downtrack = self._by_ssrc.get(ssrc)
                if downtrack is not None:
                    downtrack.request_keyframe()
        elif isinstance(item, (rtcp.ReceiverReport, rtcp.SenderReport)):
            for block in item.blocks:
                downtrack = self._by_ssrc.get(block.ssrc)
                if downtrack is not None:
                    downtrack.on_receiver_report(block, now)
            # While the server sheds load, its own late drops are among the gaps,
            # and sending less relieves it: the loss counts as reported.
            whole = self.shed.level > 0
            self.downlink.on_receiver_report(
                (d.fraction_lost if whole else d.downstream_lost, d.track.bitrates()[d.current])
                for d in self.downtracks() if d.kind == "video" and d.current != OFF
            )
        elif isinstance(item, rtcp.Remb):
            if self.downlink.on_remb(item.ssrcs, item.bitrate, now):
                self.allocate(now)  # congestion news: react now, not at the next tick

    # --- layer selection ------------------------------------------------------

    def set_video_allowed(
        self, publishers, shed: Shed = NORMAL, spared: Iterable[str] = (), speakers: Optional[list[str]] = None,
    ) -> None:
        """Last-N: whose camera video this subscriber may receive, most wanted
        first; ``shed``: what the server's load takes off the cameras of all
        but the ``spared`` publishers (sfu/load_manager.py); ``speakers``: the
        current speakers, if they changed too."""
        shedding = (shed, frozenset(spared))
        changed = shedding != (self.shed, self.spared)
        self.shed, self.spared = shedding
        publishers = list(publishers)
        self._video_rank = {publisher: place for place, publisher in enumerate(publishers)}
        self.lines.choose(publishers, list(speakers) if speakers is not None else None)
        if changed:
            self.allocate(time.monotonic())

    def set_speakers(self, participant_ids: list[str]) -> None:
        """The current speakers, loudest first."""
        self.lines.choose(speakers=list(participant_ids))

    def update_settings(self, track_id: str, settings: TrackSettings) -> bool:
        if not self.lines.update_settings(track_id, settings):
            return False
        self.allocate(time.monotonic())
        return True

    def apply_settings(self, downtrack: DownTrack, settings: TrackSettings) -> None:
        if wanted_more(downtrack.settings, settings):
            self.downlink.wished_more(time.monotonic())
        downtrack.settings = settings
        # Screen share (issue 8): already sent at a low frame rate, so its
        # temporal layers are never dropped (a max_fps cap does not apply).
        screen = downtrack.track.source == "screen_share"
        downtrack.max_temporal = 2 if screen else temporal_limit(settings.max_fps)

    def _within_last_n(self, track: PublishedTrack) -> bool:
        if self.video_allowed is None or track.source == "screen_share":
            return True
        return track.participant_id in self.video_allowed

    def allocate(self, now: float) -> None:
        """Choose every down-track's layer from wishes, bandwidth and what flows."""
        chosen = []
        for downtrack in self.downtracks():
            if not downtrack.bound:
                continue
            if downtrack.kind == "audio":  # one layer: only pausing changes anything
                downtrack.desired = OFF if downtrack.settings.paused else 0
                downtrack.set_target(downtrack.desired)
                continue
            layers = downtrack.track.layer_infos(now)
            wanted = wanted_layer(downtrack.settings, layers)
            if not self._within_last_n(downtrack.track):
                wanted = OFF
            elif self.shed.drop_layers:
                wanted = min(wanted, self.shed.layer_cap(downtrack.track, self.spared, len(layers)))
            chosen.append((downtrack, layers, wanted))
        rank, last = self._video_rank, len(self._video_rank)
        video = sorted(((d, layers, wanted) for d, layers, wanted in chosen if d.kind == "video"),
                       key=lambda item: rank.get(item[0].track.participant_id, last))
        demands = [Demand(d, wanted, d.track.bitrates(), _priority(d)) for d, _, wanted in video]
        caps = self.allocator.allocate(demands, self.downlink.estimate(now), now)
        for downtrack, layers, wanted in chosen:
            cap = caps.get(downtrack, wanted)
            downtrack.desired = min(wanted, cap)
            downtrack.set_target(select_layer(wanted, cap, downtrack.current, layers))

    def tick(self, now: float) -> None:
        self.allocate(now)
        for downtrack in self.downtracks():
            downtrack.retry_keyframe(now)

    async def close(self) -> None:
        for slot in self.slots:
            if slot.track is not None:
                self.end(slot)
        self.lines.close()
        if self._task is not None:
            self._task.cancel()
        await self.transport.close()


#: Screen share (issue 8) is served before camera tracks when bandwidth is short:
#: shared text must stay readable, while a camera tile can drop a layer.
SCREEN_SHARE_PRIORITY = 3


def _priority(downtrack) -> int:
    if downtrack.track.source == "screen_share":
        return max(downtrack.settings.priority, SCREEN_SHARE_PRIORITY)
    return downtrack.settings.priority
