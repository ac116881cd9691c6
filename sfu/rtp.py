"""RTP header access on raw bytes, and wrap-safe sequence arithmetic.

Nothing here builds objects per packet: readers return ints and offsets.
"""

from __future__ import annotations

import struct
from typing import Optional

HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, seq, timestamp, ssrc
SEQ_TS = struct.Struct("!HI")
ONE_BYTE_PROFILE = 0xBEDE
MIN_HEADER = 12


def seq_add(a: int, b: int) -> int:
    return (a + b) & 0xFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b on the 16-bit circle (-32768..32767)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    return 0 < ((a - b) & 0xFFFF) < 0x8000


def ts_add(a: int, b: int) -> int:
    return (a + b) & 0xFFFFFFFF


def ts_diff(a: int, b: int) -> int:
    """Signed distance a - b on the 32-bit circle."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def payload_offset(data: bytes) -> int:
    """Offset of the payload; -1 when the header is malformed."""
    size = len(data)
    if size < MIN_HEADER or data[0] >> 6 != 2:
        return -1
    offset = MIN_HEADER + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if offset + 4 > size:
            return -1
        offset += 4 + 4 * ((data[offset + 2] << 8) | data[offset + 3])
    end = size
    if data[0] & 0x20:
        end -= data[-1]
    if offset > end:
        return -1
    return offset


def payload_end(data: bytes) -> int:
    """End of the payload (before any padding)."""
    if data[0] & 0x20:
        return len(data) - data[-1]
    return len(data)


def extensions(data: bytes) -> dict[int, bytes]:
    """All header extension elements by id (one-byte and two-byte forms)."""
    if not data or not data[0] & 0x10:
        return {}
    start = MIN_HEADER + 4 * (data[0] & 0x0F)
    if start + 4 > len(data):
        return {}
    profile = (data[start] << 8) | data[start + 1]
    end = start + 4 + 4 * ((data[start + 2] << 8) | data[start + 3])
    if end > len(data):
        return {}
    pos = start + 4
    found: dict[int, bytes] = {}
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            byte = data[pos]
            if byte == 0:
                pos += 1
                continue
            ext_id, length = byte >> 4, (byte & 0x0F) + 1
            if ext_id == 15 or pos + 1 + length > end:
                break
            found[ext_id] = bytes(data[pos + 1 : pos + 1 + length])
            pos += 1 + length
    elif profile >> 4 == 0x100:
        while pos + 1 < end:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            length = data[pos + 1]
            if pos + 2 + length > end:
                break
            found[ext_id] = bytes(data[pos + 2 : pos + 2 + length])
            pos += 2 + length
    return found


def extension(data: bytes, ext_id: Optional[int]) -> Optional[bytes]:
    if ext_id is None:
        return None
    return extensions(data).get(ext_id)


def audio_level_byte(data: bytes, ext_id: int) -> int:
    """The one-byte value of extension ``ext_id`` (the RFC 6464 audio level),
    or -1 when absent.  A fast path for the one-byte header form that audio
    packets use (~0.3 µs against ~1.5 µs for ``extension``, which builds a
    dict); the two-byte form falls back to ``extensions``."""
    first = data[0]
    if not first & 0x10:
        return -1
    start = MIN_HEADER + 4 * (first & 0x0F)
    size = len(data)
    if start + 4 > size:
        return -1
    end = start + 4 + 4 * ((data[start + 2] << 8) | data[start + 3])
    if end > size:
        return -1
    if data[start] != 0xBE or data[start + 1] != 0xDE:
        value = extensions(data).get(ext_id)
        return value[0] if value else -1
    pos = start + 4
    while pos < end:
        byte = data[pos]
        if byte == 0:
            pos += 1
            continue
        if byte >> 4 == ext_id:
            return data[pos + 1] if pos + 1 < end else -1
        if byte >> 4 == 15:
            return -1
        pos += 2 + (byte & 0x0F)
    return -1


def one_byte_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """An RFC 8285 one-byte extension block (profile, length, padded body)."""
    body = b"".join(bytes([(ext_id << 4) | (len(value) - 1)]) + value for ext_id, value in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", ONE_BYTE_PROFILE, len(body) // 4) + body


def abs_send_time(now: float) -> bytes:
    """24-bit abs-send-time: 6.18 fixed-point seconds."""
    value = int(now * (1 << 18)) & 0xFFFFFF
    return value.to_bytes(3, "big")
