"""Per-codec payload helpers: what the forwarder needs to know, no decoding."""

from __future__ import annotations

from typing import Callable, Optional

from . import h264, vp8

KeyframeTest = Callable[[bytes, int], bool]


def keyframe_test(codec_name: str) -> Optional[KeyframeTest]:
    """The keyframe detector of a video codec; None for audio and unknowns."""
    return {"VP8": vp8.is_keyframe, "H264": h264.is_keyframe}.get(codec_name.upper())
