"""VP8 RTP payload descriptor (RFC 7741), read without decoding."""

from __future__ import annotations


def is_keyframe(packet: bytes, offset: int = 0) -> bool:
    """True for the first packet of a VP8 key frame (payload at ``offset``)."""
    size = len(packet)
    if offset >= size:
        return False
    first = packet[offset]
    if not first & 0x10 or first & 0x07:  # S bit set and partition index 0
        return False
    pos = offset + 1
    if first & 0x80:  # X: extended control bits
        if pos >= size:
            return False
        ext = packet[pos]
        pos += 1
        if ext & 0x80:  # I: picture ID, 7 or 15 bits
            if pos >= size:
                return False
            pos += 2 if packet[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if pos >= size:
        return False
    return not packet[pos] & 0x01  # P bit of the VP8 frame header: 0 = key frame
