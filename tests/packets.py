"""Byte-level builders for test packets: RTP headers, header extensions,
VP8 payload descriptors and H.264 packetizations.

Independent of sfu.rtp on purpose, so tests check the parser against
bytes laid out straight from the RFCs rather than against itself.
"""

from __future__ import annotations

import struct
from typing import Iterable, Optional, Sequence

# --- RTP (RFC 3550 section 5.1) ----------------------------------------------


def rtp_packet(
    *,
    version: int = 2,
    padding: int = 0,
    extension: Optional[bytes] = None,
    csrcs: Sequence[int] = (),
    marker: bool = False,
    pt: int = 96,
    seq: int = 0,
    ts: int = 0,
    ssrc: int = 0x11223344,
    payload: bytes = b"",
) -> bytes:
    """A raw RTP packet.

    ``padding`` is the number of padding octets appended (the last one holds
    the count, RFC 3550 5.1); 0 means no padding and a clear P bit.
    ``extension`` is a whole extension block (profile, length, body), as made
    by :func:`one_byte_ext` / :func:`two_byte_ext` / :func:`raw_ext`.
    """
    first = (version & 0x03) << 6 | (0x20 if padding else 0) | (0x10 if extension is not None else 0)
    first |= len(csrcs) & 0x0F
    second = (0x80 if marker else 0) | (pt & 0x7F)
    header = struct.pack("!BBHII", first, second, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
    header += b"".join(struct.pack("!I", c) for c in csrcs)
    if extension is not None:
        header += extension
    tail = b""
    if padding:
        tail = b"\x00" * (padding - 1) + bytes([padding & 0xFF])
    return header + payload + tail


def bare(payload: bytes) -> tuple[bytes, int]:
    """(packet, payload offset) of a payload read on its own."""
    return payload, 0


def in_rtp(payload: bytes) -> tuple[bytes, int]:
    """(packet, payload offset) of a payload behind a CSRC and a header
    extension, so that a reader must start at the offset it is given."""
    extension = one_byte_ext([(1, b"\x01\x01\x01")])
    return rtp_packet(csrcs=[1], extension=extension, payload=payload), 12 + 4 + len(extension)


def raw_ext(profile: int, body: bytes, length_words: Optional[int] = None) -> bytes:
    """An extension block with an explicit profile; the length field may lie."""
    if length_words is None:
        body += b"\x00" * (-len(body) % 4)
        length_words = len(body) // 4
    return struct.pack("!HH", profile, length_words) + body


def one_byte_ext(elements: Iterable[tuple[int, bytes]], *, pad_between: int = 0) -> bytes:
    """An RFC 8285 one-byte-header block (profile 0xBEDE), zero-padded to 32 bits.

    ``pad_between`` inserts that many zero padding octets after each element.
    """
    body = b""
    for ext_id, value in elements:
        assert 1 <= len(value) <= 16
        body += bytes([(ext_id << 4) | (len(value) - 1)]) + value + b"\x00" * pad_between
    return raw_ext(0xBEDE, body)


def two_byte_ext(elements: Iterable[tuple[int, bytes]], *, appbits: int = 0) -> bytes:
    """An RFC 8285 two-byte-header block (profile 0x100X), zero-padded."""
    body = b"".join(bytes([ext_id, len(value)]) + value for ext_id, value in elements)
    return raw_ext(0x1000 | (appbits & 0x0F), body)


# --- VP8 (RFC 7741 section 4.2) ----------------------------------------------


def vp8_descriptor(
    *,
    start: bool = True,
    partition: int = 0,
    non_reference: bool = False,
    picture_id: Optional[int] = None,
    long_picture_id: bool = False,
    tl0picidx: Optional[int] = None,
    tid: Optional[int] = None,
    layer_sync: bool = False,
    keyidx: Optional[int] = None,
) -> bytes:
    """The VP8 payload descriptor that precedes the VP8 payload."""
    extended = picture_id is not None or tl0picidx is not None or tid is not None or keyidx is not None
    first = (0x80 if extended else 0) | (0x20 if non_reference else 0)
    first |= (0x10 if start else 0) | (partition & 0x07)
    out = bytes([first])
    if not extended:
        return out
    ext = (0x80 if picture_id is not None else 0) | (0x40 if tl0picidx is not None else 0)
    ext |= (0x20 if tid is not None else 0) | (0x10 if keyidx is not None else 0)
    out += bytes([ext])
    if picture_id is not None:
        if long_picture_id:
            out += struct.pack("!H", 0x8000 | (picture_id & 0x7FFF))
        else:
            out += bytes([picture_id & 0x7F])
    if tl0picidx is not None:
        out += bytes([tl0picidx & 0xFF])
    if tid is not None or keyidx is not None:
        out += bytes([((tid or 0) & 0x03) << 6 | (0x20 if layer_sync else 0) | ((keyidx or 0) & 0x1F)])
    return out


def vp8_frame_header(keyframe: bool, width: int = 640, height: int = 480) -> bytes:
    """The first bytes of a VP8 frame (RFC 6386 9.1): P bit 0 means key frame;
    a key frame's 16-bit sizes hold two upscaling bits above 14 bits of size."""
    if keyframe:
        # size/show/version bits, then the key frame start code and the picture size.
        return bytes([0x10, 0x02, 0x00]) + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    return bytes([0x11, 0x02, 0x00])


# --- H.264 (RFC 6184) -----------------------------------------------------------


def h264_nal(nal_type: int, body: bytes = b"\xaa\xbb\xcc", *, nri: int = 3) -> bytes:
    """One NAL unit: header (F=0, NRI, type) and body; also a single-NAL payload."""
    return bytes([(nri & 0x03) << 5 | (nal_type & 0x1F)]) + body


def stap_a(nals: Sequence[bytes], *, nri: int = 3) -> bytes:
    """A STAP-A aggregation packet payload (type 24) of whole NAL units."""
    out = bytes([(nri & 0x03) << 5 | 24])
    for nal in nals:
        out += struct.pack("!H", len(nal)) + nal
    return out


def fu_a(
    nal_type: int, *, start: bool, end: bool = False, body: bytes = b"\xaa\xbb\xcc", nri: int = 3
) -> bytes:
    """One FU-A fragment payload (type 28) of a NAL unit of ``nal_type``."""
    indicator = (nri & 0x03) << 5 | 28
    header = (0x80 if start else 0) | (0x40 if end else 0) | (nal_type & 0x1F)
    return bytes([indicator, header]) + body
