"""Connection quality of one participant: excellent, good, poor or lost.

Judged from both directions at once, the worse one wins:

* upstream, from what the server receives of the participant's published
  streams: loss over the last interval (RFC 3550 counters) and jitter;
* downstream, from the receiver reports the participant's subscriber PC
  sends about each down-track: fraction lost, jitter and round-trip time.

"lost" means media should flow but nothing has for a while (no packets from
an unmuted track, or no receiver report while we send), or the participant
is reconnecting.  A worse quality is reported at once; a better one only
after it held for ``RECOVER_ROUNDS`` evaluations, so that one lucky interval
does not make the indicator flicker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional

from .layer_selector import OFF

if TYPE_CHECKING:
    from .downtrack import DownTrack
    from .published_track import PublishedTrack

EXCELLENT, GOOD, POOR, LOST = "excellent", "good", "poor", "lost"
ORDER = (EXCELLENT, GOOD, POOR, LOST)

#: (loss fraction, rtt seconds, jitter seconds) a quality may not exceed.
LIMITS = {EXCELLENT: (0.02, 0.25, 0.03), GOOD: (0.08, 0.5, 0.08)}
UPSTREAM_SILENCE = 3.0  # seconds without packets from an unmuted track: lost
DOWNSTREAM_SILENCE = 6.0  # seconds without a receiver report while we send: lost
RECOVER_ROUNDS = 2


@dataclass
class Measure:
    """The worst figures of one evaluation (None: nothing to judge by)."""

    upstream_loss: Optional[float] = None
    downstream_loss: Optional[float] = None
    rtt: Optional[float] = None
    jitter: Optional[float] = None
    silent: bool = False

    def quality(self) -> str:
        if self.silent:
            return LOST
        loss = max((x for x in (self.upstream_loss, self.downstream_loss) if x is not None), default=0.0)
        rtt, jitter = self.rtt or 0.0, self.jitter or 0.0
        for quality in (EXCELLENT, GOOD):
            max_loss, max_rtt, max_jitter = LIMITS[quality]
            if loss <= max_loss and rtt <= max_rtt and jitter <= max_jitter:
                return quality
        return POOR

    def info(self) -> dict:
        out = {}
        for name, value, scale in (
            ("upstream_loss", self.upstream_loss, 100), ("downstream_loss", self.downstream_loss, 100),
            ("rtt_ms", self.rtt, 1000), ("jitter_ms", self.jitter, 1000),
        ):
            if value is not None:
                out[name] = round(value * scale, 1)
        return out


class QualityMeter:
    """Evaluates one participant's quality from its streams and down-tracks."""

    def __init__(self) -> None:
        self.quality = EXCELLENT
        self.measure = Measure()
        self._counts: dict[int, tuple[int, int]] = {}  # id(stream) -> (expected, received)
        self._better_rounds = 0

    def evaluate(
        self, now: float, tracks: Iterable[PublishedTrack], downtracks: Iterable[DownTrack]
    ) -> Optional[str]:
        """Measure and judge; returns the new quality when it changed."""
        measure = Measure()
        self._upstream(now, tracks, measure)
        self._downstream(now, downtracks, measure)
        self.measure = measure
        return self.judge(measure.quality())

    def judge(self, seen: str) -> Optional[str]:
        """Apply the hysteresis to a freshly seen quality."""
        if ORDER.index(seen) >= ORDER.index(self.quality):
            self._better_rounds = 0
            if seen == self.quality:
                return None
        else:
            self._better_rounds += 1
            if self._better_rounds < RECOVER_ROUNDS:
                return None
            self._better_rounds = 0
        self.quality = seen
        return seen

    def _upstream(self, now: float, tracks: Iterable[PublishedTrack], measure: Measure) -> None:
        counts = {}
        for track in tracks:
            streams = [s for s in track.layers if s is not None and s.stats.received]
            if not streams:
                continue
            # a camera dynacast paused is silent on purpose, and so for a while once resumed
            newest = max(track.resumed_at, *(s.last_packet_time for s in streams))
            # a still screen may send next to nothing: only cameras and microphones count
            if not (track.muted or track.paused) and track.source != "screen_share" \
                    and now - newest > UPSTREAM_SILENCE:
                measure.silent = True
            for stream in streams:
                stats = stream.stats
                counts[id(stream)] = (stats.expected, stats.received)
                before = self._counts.get(id(stream))
                if before is not None and stats.expected > before[0]:
                    expected = stats.expected - before[0]
                    lost = max(0, expected - (stats.received - before[1]))
                    measure.upstream_loss = max(measure.upstream_loss or 0.0, lost / expected)
                jitter = stats.jitter / stream.clock_rate
                measure.jitter = max(measure.jitter or 0.0, jitter)
        self._counts = counts

    def _downstream(self, now: float, downtracks: Iterable[DownTrack], measure: Measure) -> None:
        for downtrack in downtracks:
            if not downtrack.bound or downtrack.packets_sent == 0:
                continue
            heard = downtrack.report_time or downtrack.switched_at
            if downtrack.current != OFF and now - heard > DOWNSTREAM_SILENCE:
                measure.silent = True
            if not downtrack.report_time:
                continue
            loss = downtrack.fraction_lost / 256
            measure.downstream_loss = max(measure.downstream_loss or 0.0, loss)
            measure.jitter = max(measure.jitter or 0.0, downtrack.jitter / downtrack.clock_rate)
            if downtrack.rtt is not None:
                measure.rtt = max(measure.rtt or 0.0, downtrack.rtt)
