"""Sharing one subscriber's downstream bandwidth between its video tracks.

Given the subscriber's bandwidth estimate (REMB, corrected by receiver
report loss), each track's wanted layer and the bitrate of each layer, it
decides the highest layer each track may receive. Higher priority tracks
(speaker > pinned > grid) are served first. It steps down at once when the
estimate no longer covers what is sent, and steps up one layer at a time,
at most every ``UP_INTERVAL`` seconds per track, and only with headroom, so
a steady estimate never makes a layer flap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

UP_INTERVAL = 3.0  # seconds between two step-ups of one track
UP_HEADROOM = 1.25  # the estimate must exceed the upgraded total by this factor
KEEP_TOLERANCE = 1.1  # what is being sent may exceed the estimate by this much
NOMINAL_BITRATES = (150_000, 500_000, 1_500_000)  # until a layer has been measured
LAYER_RATIO_FLOOR = 2.0  # a measured layer costs at least this times the one below
COST_WEIGHT = 0.08  # weight of one rate measurement in a layer's slow cost average
RISE_SAMPLES = 3  # measurements in a row above the cost that make a rise real


@dataclass
class Demand:
    """One video down-track as the allocator sees it."""

    key: object
    wanted: int  # highest layer the subscriber wants (-1: nothing)
    bitrates: Sequence[float]  # measured bitrate of each layer (0: unknown)
    priority: int = 1


@dataclass
class Allocator:
    caps: dict = field(default_factory=dict)  # key -> allowed layer
    last_up: dict = field(default_factory=dict)  # key -> time of last step up
    limited: dict = field(default_factory=dict)  # key -> held below its wish by bandwidth

    def allocate(self, demands: Sequence[Demand], estimate: Optional[float], now: float) -> dict:
        """Allowed layer per demand key (-1: paused for lack of bandwidth)."""
        if estimate is None:
            self.caps = {d.key: d.wanted for d in demands}
            self.limited = {d.key: False for d in demands}
            return dict(self.caps)
        keep = _greedy(demands, estimate * KEEP_TOLERANCE)
        grow = _greedy(demands, estimate / UP_HEADROOM)
        caps = {}
        for demand in demands:
            previous = self.caps.get(demand.key)
            if previous is None:  # a new track starts where the budget allows
                caps[demand.key] = keep[demand.key]
                self.last_up[demand.key] = now
            elif keep[demand.key] < previous:
                caps[demand.key] = keep[demand.key]
                self.last_up[demand.key] = now  # after congestion, wait before probing up
            elif grow[demand.key] > previous and not self.limited.get(demand.key, False):
                caps[demand.key] = grow[demand.key]  # a new wish, and room for it: go
            elif grow[demand.key] > previous and now - self.last_up.get(demand.key, -1e9) >= UP_INTERVAL:
                caps[demand.key] = previous + 1  # recovering from congestion: one step
                self.last_up[demand.key] = now
            else:
                caps[demand.key] = min(previous, demand.wanted) if demand.wanted >= 0 else previous
        self.limited = {d.key: caps[d.key] < d.wanted for d in demands}
        self.caps = caps
        return dict(caps)

    def forget(self, key: object) -> None:
        self.caps.pop(key, None)
        self.last_up.pop(key, None)
        self.limited.pop(key, None)


def next_cost(cost: float, recent: Sequence[float]) -> float:
    """A flowing layer's cost after one more rate measurement (``recent``: the
    last RISE_SAMPLES at most, newest last). A slow average, so a keyframe burst barely moves
    it; but a rise that lasts RISE_SAMPLES measurements (the publisher's
    ramp-up) is taken at once: a layer whose rate has outgrown the estimate
    must not be kept for seconds because its average lags."""
    if cost == 0:
        return recent[-1]
    if len(recent) >= RISE_SAMPLES and min(recent) > cost:
        return min(recent)
    return (1 - COST_WEIGHT) * cost + COST_WEIGHT * recent[-1]


def layer_bitrate(demand: Demand, layer: int) -> float:
    measured = demand.bitrates[layer] if layer < len(demand.bitrates) else 0
    if measured <= 0:
        return NOMINAL_BITRATES[min(layer, len(NOMINAL_BITRATES) - 1)]
    if layer == 0:
        return measured
    # a layer paused since the publisher's ramp-up keeps the cost it had then:
    # never count it cheaper than twice the layer below (a simulcast layer has
    # four times the pixels)
    return max(measured, LAYER_RATIO_FLOOR * layer_bitrate(demand, layer - 1))


def _greedy(demands: Sequence[Demand], budget: float) -> dict:
    """Lowest layer for everyone (by priority) first, then upgrades by priority."""
    order = sorted(demands, key=lambda d: -d.priority)
    caps = {d.key: -1 for d in demands}
    spent = 0.0
    for position, demand in enumerate(order):
        # the most important track keeps its lowest layer even when it overshoots:
        # a frozen speaker is worse than a congested link
        fits = spent + layer_bitrate(demand, 0) <= budget
        if demand.wanted >= 0 and (fits or position == 0):
            caps[demand.key] = 0
            spent += layer_bitrate(demand, 0)
    for demand in order:
        layer = caps[demand.key]
        while 0 <= layer < demand.wanted:
            extra = layer_bitrate(demand, layer + 1) - layer_bitrate(demand, layer)
            if spent + extra > budget:
                break
            spent += extra
            layer += 1
        caps[demand.key] = layer
    return caps
