"""Which simulcast layer one down-track should receive.

The subscriber's wishes (quality, rendered size, paused) give the layer it
*wants*; the bandwidth allocator may cap it lower; what is actually flowing
from the publisher decides the layer it *gets*: the best flowing layer at or
under the wanted one, else the lowest flowing one above it (fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

QUALITIES = ("low", "medium", "high")
OFF = -1


@dataclass
class TrackSettings:
    """What a subscriber asked for one track (LiveKit's UpdateTrackSettings)."""

    quality: Optional[str] = None
    max_width: Optional[int] = None
    max_height: Optional[int] = None
    max_fps: Optional[int] = None
    paused: bool = False
    priority: int = 1  # grid 1, pinned 2, speaker 3


@dataclass
class LayerInfo:
    """What the SFU knows of one layer of a published track."""

    flowing: bool
    width: int = 0
    height: int = 0


def wanted_layer(settings: TrackSettings, layers: Sequence[LayerInfo]) -> int:
    """The highest layer the subscriber's settings call for (OFF if paused)."""
    if settings.paused or not layers:
        return OFF
    top = len(layers) - 1
    wanted = top
    if settings.quality is not None:
        wanted = min(top, QUALITIES.index(settings.quality) if len(layers) > 1 else 0)
    if settings.max_width is not None or settings.max_height is not None:
        wanted = min(wanted, _covering_layer(settings, layers))
    return wanted


def _covering_layer(settings: TrackSettings, layers: Sequence[LayerInfo]) -> int:
    """Smallest layer at least as large as the rendered tile."""
    width = settings.max_width or 0
    height = settings.max_height or 0
    if width == 0 and height == 0:
        return 0  # a zero-size tile: the smallest layer will do
    for index, layer in enumerate(layers):
        if not layer.width:
            continue
        if layer.width >= width and layer.height >= height:
            return index
        if index == len(layers) - 1:
            return index
    # sizes unknown yet: guess from the usual 1/4, 1/2, 1 ladder of a 1280x720 camera
    guesses = [(320, 180), (640, 360), (1280, 720)][-len(layers):] if len(layers) <= 3 else []
    for index, (w, h) in enumerate(guesses):
        if w >= width and h >= height:
            return index
    return len(layers) - 1


def wanted_more(before: TrackSettings, after: TrackSettings) -> bool:
    """Whether new settings may call for a higher layer than the old ones."""
    ladder = [LayerInfo(True, 320, 180), LayerInfo(True, 640, 360), LayerInfo(True, 1280, 720)]
    return wanted_layer(after, ladder) > wanted_layer(before, ladder)


def select_layer(wanted: int, cap: int, current: int, layers: Sequence[LayerInfo]) -> int:
    """The layer to forward: wanted, capped, then bent to what flows."""
    target = min(wanted, cap)
    if target == OFF:
        return OFF
    flowing = [i for i, layer in enumerate(layers) if layer.flowing]
    if not flowing:
        return current if current != OFF else target
    below = [i for i in flowing if i <= target]
    if below:
        return max(below)
    return min(flowing)  # fallback: the only thing flowing is bigger than wanted


def temporal_limit(max_fps: Optional[int], frame_rate: float = 30.0) -> int:
    """Highest temporal layer to forward for a frame-rate cap (3 layers, 1:2:4)."""
    if not max_fps or max_fps >= frame_rate:
        return 2
    if max_fps >= frame_rate / 2:
        return 1
    return 0
