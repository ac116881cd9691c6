"""Per-codec payload handlers: what the SFU needs to know of a codec, read
from the RTP payload without decoding.

Nothing outside this package names a codec (SDP negotiation aside): a
stream and its down-tracks ask their track's handler whether a packet starts
a keyframe, the picture size a keyframe announces, the per-packet descriptor
that simulcast forwarding reads (the temporal layer, where the picture IDs
sit) and a fresh ID munger that keeps those IDs continuous across layer
switches. The depacketizer, recorder, taps and compositor (never the
forwarding path) ask it how RTP payloads become the codec's bitstream, which
assembled frames are keyframes, and the codec's name in FFmpeg.
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

    # --- frames (depacketizer, recorder, taps; never the forwarding path) ---

    #: FFmpeg's name of the codec (its decoder, and the stream a recording
    #: muxes); empty for a codec nothing here can decode.
    ffmpeg_name = ""
    #: Whether a WebM file can hold it (else a recording is Matroska).
    webm = False
    #: Whether ``depacketize``'s start flag marks a frame's first packet (a
    #: second one inside a frame means damage), not a NAL unit's (H.264).
    frame_starts = False

    def depacketize(self, payload: bytes) -> tuple[bool, bytes]:
        """(starts a unit, the codec's bitstream bytes) of one RTP payload."""
        return True, payload

    def frame_is_keyframe(self, data: bytes) -> bool:
        """Whether a whole frame (``depacketize``'s output joined) is a keyframe."""
        return True

    def picture_size(self, data: bytes) -> Optional[tuple[int, int]]:
        """(width, height) a whole keyframe's header announces (None: it must be decoded)."""
        return None

    def extradata(self, data: bytes) -> bytes:
        """What a container stores for the decoder, from the first keyframe (H.264: SPS, PPS)."""
        return b""


from . import h264, opus, vp8  # noqa: E402  (they subclass CodecHandler)

_HANDLERS = {"VP8": vp8.HANDLER, "H264": h264.HANDLER, "OPUS": opus.HANDLER}
_PLAIN = CodecHandler()


def handler(codec_name: str) -> CodecHandler:
    """The handler of a codec by its SDP name (a plain one for unknown codecs)."""
    return _HANDLERS.get(codec_name.upper(), _PLAIN)
