"""RTCP parsing and building on raw bytes (RFC 3550, 4585, 5104, REMB).

Our own small codec rather than aiortc's: it expands NACK bitmasks with
16-bit wrap-around (aiortc's does not) and never raises on garbage: a
malformed compound packet yields what parsed before the damage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterator, Union

SR, RR, SDES, BYE, RTPFB, PSFB = 200, 201, 202, 203, 205, 206
FMT_NACK, FMT_PLI, FMT_FIR, FMT_AFB = 1, 1, 4, 15

_BLOCK = struct.Struct("!IB3sIIII")


@dataclass
class ReportBlock:
    ssrc: int
    fraction_lost: int  # 0..255, fraction * 256
    packets_lost: int  # cumulative, signed 24 bit
    highest_seq: int  # extended
    jitter: int
    lsr: int
    dlsr: int


@dataclass
class SenderReport:
    ssrc: int
    ntp: int
    rtp_ts: int
    packets: int
    octets: int
    blocks: list[ReportBlock] = field(default_factory=list)


@dataclass
class ReceiverReport:
    ssrc: int
    blocks: list[ReportBlock] = field(default_factory=list)


@dataclass
class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: list[int]


@dataclass
class Pli:
    sender_ssrc: int
    media_ssrc: int


@dataclass
class Fir:
    sender_ssrc: int
    entries: list[tuple[int, int]]  # (media ssrc, command sequence number)


@dataclass
class Remb:
    sender_ssrc: int
    bitrate: int
    ssrcs: list[int]


Feedback = Union[SenderReport, ReceiverReport, Nack, Pli, Fir, Remb]


def parse(data: bytes) -> list[Feedback]:
    """Every understood packet of a compound RTCP packet."""
    items: list[Feedback] = []
    for pt, fmt, packet in split(data):
        item = _parse_one(pt, fmt, packet)
        if item is not None:
            items.append(item)
    return items


def split(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(packet type, fmt/count, packet) of each packet of a compound RTCP packet."""
    pos = 0
    while pos + 4 <= len(data):
        if data[pos] >> 6 != 2:
            return
        length = 4 * (((data[pos + 2] << 8) | data[pos + 3]) + 1)
        if pos + length > len(data):
            return
        yield data[pos + 1], data[pos] & 0x1F, data[pos : pos + length]
        pos += length


def _parse_one(pt: int, fmt: int, packet: bytes):
    if pt == SR and len(packet) >= 28:
        ssrc, ntp, rtp_ts, packets, octets = struct.unpack_from("!IQIII", packet, 4)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, _blocks(packet, 28, fmt))
    if pt == RR and len(packet) >= 8:
        return ReceiverReport(struct.unpack_from("!I", packet, 4)[0], _blocks(packet, 8, fmt))
    if pt == RTPFB and fmt == FMT_NACK and len(packet) >= 16:
        sender, media = struct.unpack_from("!II", packet, 4)
        return Nack(sender, media, _nack_lost(packet))
    if pt == PSFB and len(packet) >= 12:
        sender, media = struct.unpack_from("!II", packet, 4)
        if fmt == FMT_PLI:
            return Pli(sender, media)
        if fmt == FMT_FIR:
            entries = [
                (struct.unpack_from("!I", packet, pos)[0], packet[pos + 4])
                for pos in range(12, len(packet) - 7, 8)
            ]
            return Fir(sender, entries)
        if fmt == FMT_AFB and len(packet) >= 20 and packet[12:16] == b"REMB":
            return _parse_remb(sender, packet)
    return None


def _blocks(packet: bytes, offset: int, count: int) -> list[ReportBlock]:
    blocks = []
    for i in range(count):
        pos = offset + 24 * i
        if pos + 24 > len(packet):
            break
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(packet, pos)
        lost_value = int.from_bytes(lost, "big", signed=True)
        blocks.append(ReportBlock(ssrc, fraction, lost_value, highest, jitter, lsr, dlsr))
    return blocks


def _nack_lost(packet: bytes) -> list[int]:
    lost = []
    for pos in range(12, len(packet) - 3, 4):
        pid, blp = struct.unpack_from("!HH", packet, pos)
        lost.append(pid)
        for bit in range(16):
            if blp & (1 << bit):
                lost.append((pid + bit + 1) & 0xFFFF)
    return lost


def _parse_remb(sender: int, packet: bytes) -> Remb:
    count = packet[16]
    exponent = packet[17] >> 2
    mantissa = ((packet[17] & 0x03) << 16) | (packet[18] << 8) | packet[19]
    ssrcs = [
        struct.unpack_from("!I", packet, 20 + 4 * i)[0]
        for i in range(count)
        if 24 + 4 * i <= len(packet)
    ]
    return Remb(sender, mantissa << exponent, ssrcs)


# --- building ----------------------------------------------------------------


def _header(fmt: int, pt: int, body_len: int) -> bytes:
    return struct.pack("!BBH", 0x80 | fmt, pt, (body_len + 4) // 4 - 1)


def _block_bytes(block: ReportBlock) -> bytes:
    lost = max(-0x800000, min(0x7FFFFF, block.packets_lost)) & 0xFFFFFF
    return _BLOCK.pack(
        block.ssrc,
        block.fraction_lost & 0xFF,
        lost.to_bytes(3, "big"),
        block.highest_seq & 0xFFFFFFFF,
        block.jitter & 0xFFFFFFFF,
        block.lsr & 0xFFFFFFFF,
        block.dlsr & 0xFFFFFFFF,
    )


def build_rr(ssrc: int, blocks: list[ReportBlock]) -> bytes:
    body = struct.pack("!I", ssrc) + b"".join(_block_bytes(b) for b in blocks[:31])
    return _header(len(blocks[:31]), RR, len(body)) + body


def build_sr(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int) -> bytes:
    body = struct.pack(
        "!IQIII", ssrc, ntp & 0xFFFFFFFFFFFFFFFF, rtp_ts & 0xFFFFFFFF,
        packets & 0xFFFFFFFF, octets & 0xFFFFFFFF,
    )
    return _header(0, SR, len(body)) + body


def build_sdes(ssrc: int, cname: str) -> bytes:
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return _header(1, SDES, len(chunk)) + chunk


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return _header(FMT_PLI, PSFB, 8) + struct.pack("!II", sender_ssrc, media_ssrc)


def build_fir(sender_ssrc: int, media_ssrc: int, seq: int) -> bytes:
    body = struct.pack("!IIIB3x", sender_ssrc, 0, media_ssrc, seq & 0xFF)
    return _header(FMT_FIR, PSFB, len(body)) + body


def build_nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """A generic NACK; ``lost`` in sending order, wrap-around allowed."""
    fci = b""
    pending = list(lost)
    while pending:
        pid = pending.pop(0)
        blp = 0
        rest = []
        for seq in pending:
            distance = (seq - pid - 1) & 0xFFFF
            if distance < 16:
                blp |= 1 << distance
            else:
                rest.append(seq)
        pending = rest
        fci += struct.pack("!HH", pid, blp)
    body = struct.pack("!II", sender_ssrc, media_ssrc) + fci
    return _header(FMT_NACK, RTPFB, len(body)) + body


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    exponent = 0
    mantissa = max(0, int(bitrate))
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exponent += 1
    body = struct.pack("!II4sB", sender_ssrc, 0, b"REMB", len(ssrcs))
    body += bytes([(exponent << 2) | (mantissa >> 16), (mantissa >> 8) & 0xFF, mantissa & 0xFF])
    body += b"".join(struct.pack("!I", s) for s in ssrcs)
    return _header(FMT_AFB, PSFB, len(body)) + body
