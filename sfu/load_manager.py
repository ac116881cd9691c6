"""Graceful overload: when the event loop is over budget, shed video, one
level at a time, and give it back when load falls (the Jitsi videobridge's
load manager, with levels instead of a last-N scale).

The levels (``LEVELS``), each adding to the one before:

1. ``top_layer_off``: non-speakers' camera video one simulcast layer lower;
2. ``lowest_layer_only``: non-speakers' camera video at its lowest layer;
3. ``last_n_halved``: each subscriber gets half its last-N (at least
   ``MIN_LAST_N``); pins and recent speakers are kept longest;
4. ``speakers_only``: no camera video but the speakers';
5. ``speakers_top_layer_off``: the speakers' camera video one layer lower
   (a 150-person room that all watch the speaker in high gets most of its
   packets from that one camera).

Never shed: audio, the speakers' video (the dominant speaker, even in a
pause, and whoever is speaking: sfu/room_speakers.py; it flows at every
level, one layer lower at the last) and screen shares.
One worker's rooms share its loop, so the level is the worker's, applied
to all its rooms (RoomRegistry.set_shed).

When (``LoadManager.update``, pure: time passed in): over budget, one step
up (to the next level that takes something off what is forwarded now: in a
room of small tiles, capping layers takes nothing), at most every
``step_interval``, or ``FAR_BEHIND`` times as often while
the lag is ``FAR_BEHIND`` times its budget (a room filling faster than the
server can take it: every second spent there is media dropped and joins
delayed, and a step too many comes back down); calm (under the lower
thresholds) for ``hold`` seconds, one step down, then calm for ``hold``
again before the next. Between the thresholds the level stays: hysteresis.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Collection, Optional

from .config import LoadConfig
from .loop_load import LoopLoad

if TYPE_CHECKING:
    from .published_track import PublishedTrack

log = logging.getLogger(__name__)

MIN_LAST_N = 3  # a halved last-N never goes below this
FAR_BEHIND = 4  # lag this many times lag_high_ms: steps this many times as often
ALL_BUT_LOWEST = 1000  # drop_layers: every layer above the lowest


@dataclass(frozen=True)
class Shed:
    """What one load level takes off the non-speakers' camera video."""

    level: int
    name: str
    drop_layers: int = 0  # top simulcast layers taken off
    halve_last_n: bool = False
    speakers_only: bool = False
    spared_drop_layers: int = 0  # top layers taken off the speakers' cameras

    def layer_cap(self, track: PublishedTrack, spared: Collection[str], layer_count: int) -> int:
        """The highest of the track's ``layer_count`` layers that may be
        forwarded: only cameras lose any, those of the ``spared`` least."""
        top = layer_count - 1
        if track.kind != "video" or track.source == "screen_share":
            return top
        drop = self.spared_drop_layers if track.participant_id in spared else self.drop_layers
        return max(0, top - drop)

    def last_n(self, last_n: int) -> int:
        """How many cameras a subscriber gets, the speakers' aside."""
        if self.speakers_only:
            return 0
        if self.halve_last_n:
            return min(last_n, max(MIN_LAST_N, last_n // 2))
        return last_n


LEVELS = (
    Shed(0, "none"),
    Shed(1, "top_layer_off", drop_layers=1),
    Shed(2, "lowest_layer_only", drop_layers=ALL_BUT_LOWEST),
    Shed(3, "last_n_halved", drop_layers=ALL_BUT_LOWEST, halve_last_n=True),
    Shed(4, "speakers_only", drop_layers=ALL_BUT_LOWEST, speakers_only=True),
    Shed(5, "speakers_top_layer_off", drop_layers=ALL_BUT_LOWEST, speakers_only=True, spared_drop_layers=1),
)
NORMAL = LEVELS[0]


class LoadManager:
    """Chooses the level from the loop's load; ``apply`` gets each new one."""

    def __init__(
        self, config: LoadConfig, apply: Callable[[Shed], None], measure: Optional[LoopLoad] = None,
        would_shed: Callable[[Shed], bool] = lambda shed: True,
    ) -> None:
        """``would_shed``: whether a level takes anything off what is
        forwarded now; a step up skips the levels that would not."""
        self.config = config
        self.apply = apply
        self.would_shed = would_shed
        self.measure = measure or LoopLoad()
        self.level = 0
        self.steps = {"up": 0, "down": 0}
        self._last_step = -math.inf
        self._calm_since: Optional[float] = None

    @property
    def shed(self) -> Shed:
        return LEVELS[self.level]

    def start(self) -> None:
        """Measure the running loop, and act on it when enabled."""
        self.measure.start(self.update)

    def stop(self) -> None:
        self.measure.stop()

    def update(self, busy: float, lag: float, now: float) -> None:
        """One smoothed sample: busy fraction and lag (seconds) at ``now``."""
        config = self.config
        if not config.enabled:
            return
        if busy > config.busy_high or lag * 1000 > config.lag_high_ms:
            self._calm_since = None
            interval = config.step_interval
            if lag * 1000 >= FAR_BEHIND * config.lag_high_ms:
                interval /= FAR_BEHIND
            if self.level < len(LEVELS) - 1 and now - self._last_step >= interval:
                self._step_up(now, busy, lag)
        elif busy < config.busy_low and lag * 1000 < config.lag_low_ms:
            if self._calm_since is None:
                self._calm_since = now
            calm_enough = now - self._calm_since >= config.hold
            if self.level > 0 and calm_enough and now - self._last_step >= config.step_interval:
                self._step(-1, now, busy, lag)
                self._calm_since = now  # calm again for ``hold`` before the next step
        else:
            self._calm_since = None

    def _step_up(self, now: float, busy: float, lag: float) -> None:
        """To the next level that sheds something: waiting a step_interval on
        a level that changes nothing only prolongs the overload."""
        for level in range(self.level + 1, len(LEVELS)):
            if self.would_shed(LEVELS[level]):
                self._step(level - self.level, now, busy, lag)
                return

    def _step(self, direction: int, now: float, busy: float, lag: float) -> None:
        self.level += direction
        self._last_step = now
        self.steps["up" if direction > 0 else "down"] += 1
        log.log(logging.WARNING if direction > 0 else logging.INFO,
                "event loop %.0f %% busy, lag %.0f ms: video shed level %d (%s)",
                busy * 100, lag * 1000, self.level, self.shed.name)
        self.apply(self.shed)
