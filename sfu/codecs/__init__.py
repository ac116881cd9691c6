"""Per-codec payload handlers: what the forwarder needs to know of a codec,
read from the RTP payload without decoding.

A stream and its down-tracks ask their track's handler, never a codec by
name: whether a packet starts a keyframe, the picture size a keyframe
announces, the per-packet descriptor that simulcast forwarding reads (the
temporal layer, where the picture IDs sit) and a fresh ID munger that keeps
those IDs continuous across layer switches.
"""

from __future__ import annotations

from typing import Optional, Protocol


class Description(Protocol):
    """What a codec's payload descriptor tells a down-track about one packet."""

    tid: int  # temporal layer
    start: bool  # first packet of a frame


class IdMunger(Protocol):
    """Keeps a codec's picture IDs continuous for one down-track."""

    offsets: tuple

    def switch(self, packet: bytes, offset: int) -> None: ...

    def record(self, packet: bytes, description: Description) -> None: ...

    def rewrite(self, payload: bytearray, description: Description, base: int,
                record: bool = True, offsets: Optional[tuple] = None) -> None: ...


class CodecHandler:
    """A codec with nothing to detect or munge (audio); codecs override."""

    name = ""
    kind = "audio"
    #: Whether simulcast down-tracks must rewrite IDs in the payload.
    munges_ids = False

    def is_keyframe(self, packet: bytes, offset: int) -> bool:
        return False

    def frame_size(self, packet: bytes, offset: int) -> Optional[tuple[int, int]]:
        """(width, height) a keyframe's first packet announces, when the codec tells."""
        return None

    def describe(self, packet: bytes, offset: int, end: int) -> Optional[Description]:
        """The payload descriptor (None: malformed); only for codecs that munge IDs."""
        return None

    def id_munger(self) -> Optional[IdMunger]:
        return None


from . import h264, opus, vp8  # noqa: E402  (they subclass CodecHandler)

_HANDLERS = {"VP8": vp8.HANDLER, "H264": h264.HANDLER, "OPUS": opus.HANDLER}
_PLAIN = CodecHandler()


def handler(codec_name: str) -> CodecHandler:
    """The handler of a codec by its SDP name (a plain one for unknown codecs)."""
    return _HANDLERS.get(codec_name.upper(), _PLAIN)
