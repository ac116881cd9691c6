"""H.264 RTP payload (RFC 6184, packetization-mode 1), read without decoding;
payloads to Annex B frames."""

from __future__ import annotations

from . import CodecHandler

NAL_IDR, NAL_SPS, NAL_PPS = 5, 7, 8
STAP_A, FU_A = 24, 28
_KEY_TYPES = (NAL_IDR, NAL_SPS)
START_CODE = b"\x00\x00\x00\x01"


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
        return any(packet[start] & 0x1F in _KEY_TYPES for start, _ in _stap_a_units(packet, offset))
    return False


def _stap_a_units(packet: bytes, offset: int):
    """(start, end) of each NAL unit of the STAP-A at ``offset``, up to a damaged size."""
    pos = offset + 1
    while pos + 3 <= len(packet):
        size = (packet[pos] << 8) | packet[pos + 1]
        if size == 0 or pos + 2 + size > len(packet):
            return
        yield pos + 2, pos + 2 + size
        pos += 2 + size


def depacketize(payload: bytes) -> tuple[bool, bytes]:
    """(starts a NAL unit sequence, Annex B bytes) of one RTP payload."""
    if not payload:
        return False, b""
    nal_type = payload[0] & 0x1F
    if 1 <= nal_type <= 23:
        return True, START_CODE + payload
    if nal_type == STAP_A:
        return True, b"".join(START_CODE + payload[start:end] for start, end in _stap_a_units(payload, 0))
    if nal_type == FU_A and len(payload) > 1:
        header = payload[1]
        if header & 0x80:  # start of the fragmented NAL unit
            return True, START_CODE + bytes([(payload[0] & 0xE0) | (header & 0x1F)]) + payload[2:]
        return False, payload[2:]
    return False, b""  # STAP-B, MTAP, FU-B: not used by WebRTC


def nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex B buffer (4-byte start codes, as built here)."""
    types = []
    pos = data.find(START_CODE)
    while pos >= 0 and pos + 4 < len(data):
        types.append(data[pos + 4] & 0x1F)
        pos = data.find(START_CODE, pos + 4)
    return types


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units of an Annex B frame (the stream's extradata)."""
    units = [START_CODE + unit for unit in data.split(START_CODE) if unit and unit[0] & 0x1F in (NAL_SPS, NAL_PPS)]
    return b"".join(units)


class H264Handler(CodecHandler):
    """Simulcast H.264 needs no payload rewrite: each layer's IDR restarts the decoder."""

    name = "H264"
    kind = "video"
    ffmpeg_name = "h264"

    is_keyframe = staticmethod(is_keyframe)  # the function itself: called once per received packet

    def depacketize(self, payload: bytes) -> tuple[bool, bytes]:
        return depacketize(payload)

    def frame_is_keyframe(self, data: bytes) -> bool:
        return NAL_IDR in nal_types(data)

    def extradata(self, data: bytes) -> bytes:
        return parameter_sets(data)


HANDLER = H264Handler()
