"""Slot subscriptions: a fixed number of send m-lines per kind, refilled.

A subscriber that asks for slots at join gets exactly that many video and
audio m-lines on its subscriber PC, created once. Which track a slot carries
changes without renegotiation (what Jitsi does with SSRC rewriting): the
slot keeps its SSRC and the munger keeps its numbering continuous, as on a
simulcast layer switch. Video slots follow the subscriber's last-N choice
(screen shares first, then pins, recent speakers, the longest present);
audio slots follow the loudest current speakers, so the audio of silent
participants is not forwarded at all.

:func:`assign` is the pure part: which track goes into which slot, keeping
every track that stays chosen in the slot it already has (a tile does not
jump between slots when the order changes).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence

from .layer_selector import TrackSettings
from .published_track import PublishedTrack
from .send_lines import Slot

if TYPE_CHECKING:
    from .subscriber import Subscriber

log = logging.getLogger(__name__)

#: Bounds of what a client may ask for at join.
MAX_VIDEO_SLOTS = 49
MAX_AUDIO_SLOTS = 10


def assign(
    current: Sequence[Optional[str]], wanted: Sequence[str], keep: Sequence[str] = ()
) -> list[Optional[str]]:
    """The new occupant (track id or None) of every slot.

    ``wanted``: the tracks to carry, most wanted first (only the first
    ``len(current)`` can get a slot). ``keep``: tracks that may stay where
    they are while no wanted track needs their slot (audio: a speaker who
    just fell silent keeps the slot until someone else talks, so slots do
    not flap). Any other occupant is dropped.
    """
    chosen = list(dict.fromkeys(wanted))[: len(current)]
    result = [t if t in chosen else None for t in current]
    placed = set(result)
    newcomers = [t for t in chosen if t not in placed]
    # free slots first; then the slots of kept-but-no-longer-wanted tracks
    kept = [i for i, t in enumerate(current) if t is not None and result[i] is None and t in keep]
    free = [i for i, t in enumerate(result) if t is None and i not in kept]
    for index in free + kept:
        if not newcomers:
            break
        result[index] = newcomers.pop(0)
    for index in kept:
        if result[index] is None:
            result[index] = current[index]
    return result


class FixedSlots:
    """A fixed set of slots instead of one m-line per track (a subscriber's
    :class:`~sfu.send_lines.Lines`, chosen at join).

    Subscriptions, track settings and layer_changed work by track id as for
    any subscriber; a subscribed track is forwarded only while it holds a
    slot. ``on_slots_changed`` gets the slot list (see :meth:`mapping`)
    whenever an occupant changes, before the new one's media flows.
    """

    def __init__(
        self,
        subscriber: Subscriber,
        counts: dict[str, int],
        on_slots_changed: Callable[[list[dict]], None],
    ) -> None:
        self._subscriber = subscriber
        self._on_slots_changed = on_slots_changed
        self._tracks: dict[str, PublishedTrack] = {}  # subscribed, in a slot or not
        # the same tracks by publisher: a refill looks at the few last-N and
        # speakers, not at every track of a 150-person room
        self._by_publisher: dict[str, list[PublishedTrack]] = {}
        self._screens: dict[str, PublishedTrack] = {}  # the subscribed screen shares
        self._settings: dict[str, TrackSettings] = {}
        self._ranked: list[str] = []  # last-N publishers, in order
        self._speakers: list[str] = []
        self._negotiated = False
        participant_id = subscriber.participant_id
        for kind in ("video", "audio"):
            for index in range(counts.get(kind, 0)):
                transceiver = subscriber.transport.add_slot(kind, f"slots-{participant_id}", f"{kind}-slot-{index}")
                subscriber.slots.append(Slot(transceiver, kind, ""))
        subscriber.negotiate()

    # --- what the room and the client say -------------------------------------

    def subscribed(self, track_id: str) -> bool:
        return track_id in self._tracks

    def subscriptions(self) -> list[tuple[PublishedTrack, TrackSettings]]:
        """Every subscribed track, in a slot or not (restored after a resume)."""
        return [(t, self._settings.get(t.id, TrackSettings())) for t in self._tracks.values()]

    def subscribe(self, track: PublishedTrack) -> None:
        if track.id not in self._tracks:
            self._tracks[track.id] = track
            self._by_publisher.setdefault(track.participant_id, []).append(track)
            if track.source == "screen_share":
                self._screens[track.id] = track
            if self._may_want(track):
                self.refill()

    def unsubscribe(self, track_id: str) -> None:
        track = self._tracks.pop(track_id, None)
        if track is not None:
            self._settings.pop(track_id, None)
            self._screens.pop(track_id, None)
            others = [t for t in self._by_publisher.get(track.participant_id, ()) if t.id != track_id]
            if others:
                self._by_publisher[track.participant_id] = others
            else:
                self._by_publisher.pop(track.participant_id, None)
            if self._may_want(track) or self._slot_of(track_id) is not None:
                self.refill()

    def _may_want(self, track: PublishedTrack) -> bool:
        """Whether ``track`` can be among the wanted at all: someone who
        joins a big room changes no slot of the others unless last-N or the
        speakers name them (each refill would cost the whole room a pass)."""
        return (track.source == "screen_share" or track.participant_id in self._ranked
                or track.participant_id in self._speakers)

    def choose(self, ranked: Optional[list[str]] = None, speakers: Optional[list[str]] = None) -> None:
        kinds = []
        if ranked is not None and ranked != self._ranked:
            self._ranked = ranked
            self._subscriber.video_allowed = set(ranked)
            kinds.append("video")
        if speakers is not None and speakers != self._speakers:
            self._speakers = speakers
            kinds.append("audio")
        if kinds:
            self.refill(kinds)

    def update_settings(self, track_id: str, settings: TrackSettings) -> bool:
        if track_id not in self._tracks:
            return False
        self._settings[track_id] = settings
        slot = self._slot_of(track_id)
        if slot is not None:
            self._subscriber.apply_settings(slot.downtrack, settings)
        self.refill()  # a paused track gives its slot up, a resumed one may get one
        return True

    # --- who goes where ---------------------------------------------------------

    def _usable(self, track: PublishedTrack, kind: str) -> bool:
        settings = self._settings.get(track.id)
        return track.kind == kind and (settings is None or not settings.paused)

    def _of(self, participant_ids: Sequence[str], kind: str) -> list[PublishedTrack]:
        """The usable tracks of these publishers, in their order."""
        return [t for pid in participant_ids for t in self._by_publisher.get(pid, ()) if self._usable(t, kind)]

    def _video_wanted(self) -> list[str]:
        """Screen shares first, then the cameras of the last-N, in its order."""
        screens = [t.id for t in self._screens.values() if self._usable(t, "video")]
        cameras = [t.id for t in self._of(self._ranked, "video") if t.source != "screen_share"]
        return screens + cameras

    def _audio_wanted(self) -> list[str]:
        return [t.id for t in self._of(self._speakers, "audio") if not t.muted]

    def refill(self, kinds: Sequence[str] = ("video", "audio")) -> None:
        """Give every slot its occupant; announce and start what changed."""
        changed = False
        plans = []
        if "video" in kinds:
            plans.append(("video", self._video_wanted(), ()))
        if "audio" in kinds:
            plans.append(("audio", self._audio_wanted(), self._tracks))  # a fallen-silent speaker stays
        for kind, wanted, keep in plans:
            slots = [s for s in self._subscriber.slots if s.kind == kind]
            current = [s.track.id if s.track is not None else None for s in slots]
            for slot, before, after in zip(slots, current, assign(current, wanted, keep)):
                if before != after:
                    self._fill(slot, self._tracks[after] if after is not None else None)
                    changed = True
        if changed and self._negotiated:
            self._on_slots_changed(self.mapping())
            self._subscriber.allocate(time.monotonic())

    def mapping(self) -> list[dict]:
        """What every slot carries (``track_id`` null: nothing)."""
        return [
            {"mid": s.transceiver.mid, "kind": s.kind,
             "participant_id": s.track.participant_id if s.track is not None else None,
             "track_id": s.track.id if s.track is not None else None}
            for s in self._subscriber.slots
        ]

    def _slot_of(self, track_id: str) -> Optional[Slot]:
        return next((s for s in self._subscriber.slots if s.track is not None and s.track.id == track_id), None)

    def _fill(self, slot: Slot, track: Optional[PublishedTrack]) -> None:
        """Put ``track`` (or nothing) in a slot: same SSRC, numbering carried on."""
        old = slot.downtrack
        if slot.track is not None:
            self._subscriber.end(slot)
        slot.track = track
        if track is None:
            return  # the old down-track stays as the keeper of the numbering
        downtrack = self._subscriber.new_downtrack(track)
        if old is not None:
            downtrack.munger = old.munger  # seq/ts continue where the last source stopped
            if downtrack.ids is not None and old.ids is not None:
                downtrack.ids = old.ids  # picture IDs too
        self._subscriber.apply_settings(downtrack, self._settings.get(track.id, TrackSettings()))
        slot.downtrack = downtrack
        track.add_downtrack(downtrack)
        self._bind(slot)

    def _bind(self, slot: Slot) -> None:
        """Start the slot's down-track once the m-line is negotiated."""
        if not slot.bound or slot.track is None or slot.downtrack.bound:
            return
        section = self._subscriber.transport.sent_section(slot.transceiver, slot.track.codec)
        if section is None:
            log.info("participant %s: the client does not take %s on slot %s",
                     self._subscriber.participant_id, slot.track.codec.mime_type, slot.transceiver.mid)
            return
        self._subscriber.bind(slot, section)

    # --- negotiation (once) -----------------------------------------------------

    def offer_tracks(self, in_offer: Iterable[Slot]) -> list[dict]:
        return []  # slots_changed says what each slot carries

    def bind_negotiated(self, offered: dict) -> None:
        for slot in self._subscriber.slots:
            if id(slot) in offered and not slot.bound:
                slot.bound = True  # for a slot: its m-line is negotiated
                self._bind(slot)
        if not self._negotiated:
            self._negotiated = True
            self._on_slots_changed(self.mapping())

    def close(self) -> None:
        self._tracks.clear()
        self._screens.clear()
        self._by_publisher.clear()
