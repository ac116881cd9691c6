"""A subscriber's downstream bandwidth estimate, from the feedback it sends.

Two sources: the client's REMB (what it thinks it can receive), and the loss
its receiver reports show on the video we send: while the server keeps up,
less what the forwarded stream already lacked when it reached us (a
publisher's lossy uplink is not the subscriber's downlink: sfu/downtrack.py,
sfu/subscriber.py). The estimate is the lower
of the two; None while nothing limits. Pure: every input carries the time
it happened (``now``, seconds of a monotonic clock), nothing here reads a
clock, sleeps or touches a socket, so a test feeds it a table of reports.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Optional

REMB_CLIMBING = 1.03  # REMB up this much within a second: still ramping, not a limit
REMB_FALLING = 0.9  # REMB this far under its 2 s peak: congestion, it binds at once
REMB_FRESH = 2.0  # seconds a REMB for some of our SSRCs counts toward the estimate
REMB_DROP = 0.8  # a REMB under this share of the last estimate is news: allocate now
PEAK_WINDOW = 2.0  # seconds of REMBs whose peak a falling REMB is held against
CLIMB_WINDOW = 1.2  # seconds back to the REMB a climbing one is compared with
WISH_GRACE = 4.0  # seconds a subscriber's new wish is not held back by a stale REMB
LOSS_HIGH = 0.10  # loss above this: the estimate drops below what is sent
LOSS_LOW = 0.02  # loss under this: the loss estimate recovers
LOSS_RECOVERY = 1.08  # growth of the loss estimate per clean receiver report


class DownlinkEstimate:
    def __init__(self) -> None:
        #: the latest REMB total (None: the client never sent one)
        self.remb: Optional[int] = None
        self._remb_history: deque = deque()  # (time, bitrate) of each REMB, PEAK_WINDOW back
        self._remb_parts: dict[frozenset, tuple[float, int]] = {}
        self._loss_estimate: Optional[float] = None
        self._wish_grace_until = 0.0

    def on_remb(self, ssrcs: Iterable[int], bitrate: int, now: float) -> bool:
        """Take one REMB; True when it is congestion news (the first REMB,
        or one well under the last estimate) that should be acted on now."""
        previous, self.remb = self.remb, self._remb_total(frozenset(ssrcs), bitrate, now)
        self._remb_history.append((now, bitrate))
        while self._remb_history and self._remb_history[0][0] < now - PEAK_WINDOW:
            self._remb_history.popleft()
        return previous is None or bitrate < previous * REMB_DROP

    def _remb_total(self, ssrcs: frozenset, bitrate: int, now: float) -> int:
        """Chromium sends one REMB for all our SSRCs; aiortc one per m-line for
        its own SSRC: the estimate is the sum of the latest REMB of each set
        of SSRCs (heard from within REMB_FRESH seconds). A set that shares an
        SSRC with the new one is the same estimate, superseded."""
        parts = self._remb_parts
        for key in [k for k, (t, _) in parts.items() if now - t > REMB_FRESH or k & ssrcs]:
            del parts[key]
        parts[ssrcs] = (now, bitrate)
        return sum(bitrate for _, bitrate in parts.values())

    def on_receiver_report(self, video: Iterable[tuple[int, float]]) -> None:
        """Take the loss of the video being sent: (fraction lost on the way
        from us to the subscriber, in 1/256; bitrate of the layer sent) per
        flowing video down-track."""
        video = list(video)
        if not video:
            return
        loss = max(fraction_lost for fraction_lost, _ in video) / 256
        sending = sum(bitrate for _, bitrate in video)
        if loss > LOSS_HIGH:
            self._loss_estimate = sending * (1 - loss / 2)
        elif loss < LOSS_LOW and self._loss_estimate is not None:
            self._loss_estimate *= LOSS_RECOVERY  # recover gently; gone once it no longer binds
            if self._loss_estimate > 2 * max(sending, 1):
                self._loss_estimate = None

    def wished_more(self, now: float) -> None:
        """The subscriber asked for more (a bigger tile, a higher quality)."""
        self._wish_grace_until = now + WISH_GRACE

    def estimate(self, now: float) -> Optional[float]:
        """Downstream bandwidth: the REMB when it binds, lowered while receiver
        reports show loss; None when nothing limits."""
        remb = self._binding_remb(now)
        estimates = [e for e in (remb, self._loss_estimate) if e is not None]
        return min(estimates) if estimates else None

    def _binding_remb(self, now: float) -> Optional[float]:
        """A browser's REMB climbs slowly and never exceeds ~1.5x what it
        receives. So it limits us when it falls (congestion), or when it has
        settled; not while it is still climbing, nor for a few seconds after
        the subscriber asked for more (its REMB cannot know yet)."""
        if self.remb is None:
            return None
        peak = max((r for _, r in self._remb_history), default=self.remb)
        if self.remb < REMB_FALLING * peak:
            return self.remb
        second_ago = next((r for t, r in self._remb_history if t >= now - CLIMB_WINDOW), None)
        if second_ago is not None and self.remb > second_ago * REMB_CLIMBING:
            return None
        if now < self._wish_grace_until:
            return None
        return self.remb
