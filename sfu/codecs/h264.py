"""H.264 RTP payload (RFC 6184, packetization-mode 1), read without decoding."""

from __future__ import annotations

from . import CodecHandler

NAL_IDR, NAL_SPS = 5, 7
STAP_A, FU_A = 24, 28
_KEY_TYPES = (NAL_IDR, NAL_SPS)


def is_keyframe(packet: bytes, offset: int = 0) -> bool:
    """True for a packet that starts an IDR picture or carries its SPS."""
    if len(packet) < offset + 2:
        return False
    nal_type = packet[offset] & 0x1F
    if nal_type in _KEY_TYPES:
        return True
    if nal_type == FU_A:
        header = packet[offset + 1]
        return bool(header & 0x80) and (header & 0x1F) in _KEY_TYPES
    if nal_type == STAP_A:
        return any(t in _KEY_TYPES for t in _stap_a_types(packet, offset))
    return False


def _stap_a_types(packet: bytes, offset: int):
    pos = offset + 1
    while pos + 3 <= len(packet):
        size = (packet[pos] << 8) | packet[pos + 1]
        if size == 0 or pos + 2 + size > len(packet):
            return
        yield packet[pos + 2] & 0x1F
        pos += 2 + size


class H264Handler(CodecHandler):
    """Simulcast H.264 needs no payload rewrite: each layer's IDR restarts the decoder."""

    name = "H264"
    kind = "video"

    def is_keyframe(self, packet: bytes, offset: int) -> bool:
        return is_keyframe(packet, offset)


HANDLER = H264Handler()
