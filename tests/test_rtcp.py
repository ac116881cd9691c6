"""sfu.rtcp: building and parsing feedback, NACK wrap-around, and garbage."""

from __future__ import annotations

import random
import struct

import pytest

from sfu import rtcp
from sfu.rtcp import Fir, Nack, Pli, ReceiverReport, Remb, ReportBlock, SenderReport

P = pytest.param


def header(fmt: int, pt: int, length_words: int, version: int = 2) -> bytes:
    """A common RTCP header with an explicit (possibly lying) length field."""
    return struct.pack("!BBH", (version << 6) | fmt, pt, length_words)


def packet(fmt: int, pt: int, body: bytes, version: int = 2) -> bytes:
    return header(fmt, pt, len(body) // 4, version) + body


def block_bytes(ssrc, fraction, lost, highest, jitter, lsr, dlsr) -> bytes:
    return struct.pack("!IB", ssrc, fraction) + (lost & 0xFFFFFF).to_bytes(3, "big") + struct.pack(
        "!IIII", highest, jitter, lsr, dlsr
    )


def fields(data: bytes) -> tuple[int, int, int, int]:
    """(version, fmt, pt, length in bytes from the length field) of the first packet."""
    return data[0] >> 6, data[0] & 0x1F, data[1], 4 * (struct.unpack_from("!H", data, 2)[0] + 1)


BLOCK_A = ReportBlock(ssrc=0xAAAA0001, fraction_lost=51, packets_lost=7, highest_seq=0x0001_0005,
                      jitter=123, lsr=0x12345678, dlsr=65536)
BLOCK_B = ReportBlock(ssrc=0xBBBB0002, fraction_lost=0, packets_lost=-3, highest_seq=0xFFFFFFFF,
                      jitter=0, lsr=0, dlsr=0)

# --- sender and receiver reports ---------------------------------------------------


@pytest.mark.parametrize(
    "args, parsed",
    [
        P((1, 0x1122334455667788, 90000, 10, 1200), SenderReport(1, 0x1122334455667788, 90000, 10, 1200),
          id="plain"),
        P((0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
          SenderReport(0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), id="all-max"),
        P((2, 1 << 64 | 5, (1 << 32) + 7, (1 << 32) + 1, (1 << 32) + 2), SenderReport(2, 5, 7, 1, 2),
          id="counters-wrap-at-2^32-ntp-at-2^64"),
    ],
)
def test_sender_report_round_trip(args, parsed):
    data = rtcp.build_sr(*args)
    assert fields(data) == (2, 0, rtcp.SR, 28) and len(data) == 28
    assert rtcp.parse(data) == [parsed]


def test_sender_report_with_report_blocks():
    body = struct.pack("!IQIII", 9, 1 << 40, 3000, 4, 5)
    body += block_bytes(0xAAAA0001, 51, 7, 0x0001_0005, 123, 0x12345678, 65536)
    body += block_bytes(0xBBBB0002, 0, -3, 0xFFFFFFFF, 0, 0, 0)
    assert rtcp.parse(packet(2, rtcp.SR, body)) == [SenderReport(9, 1 << 40, 3000, 4, 5, [BLOCK_A, BLOCK_B])]


@pytest.mark.parametrize(
    "blocks",
    [
        P([], id="no-blocks"),
        P([BLOCK_A], id="one-block"),
        P([BLOCK_A, BLOCK_B], id="two-blocks-negative-loss"),
    ],
)
def test_receiver_report_round_trip(blocks):
    data = rtcp.build_rr(0xCAFE, blocks)
    assert fields(data) == (2, len(blocks), rtcp.RR, 8 + 24 * len(blocks)) and len(data) == 8 + 24 * len(blocks)
    assert rtcp.parse(data) == [ReceiverReport(0xCAFE, blocks)]


def test_receiver_report_keeps_at_most_31_blocks():
    blocks = [ReportBlock(i, 0, 0, i, 0, 0, 0) for i in range(33)]
    (report,) = rtcp.parse(rtcp.build_rr(1, blocks))
    assert report.blocks == blocks[:31]


@pytest.mark.parametrize(
    "field, given, parsed",
    [
        P("packets_lost", -1, -1, id="lost-minus-one"),
        P("packets_lost", 0x7FFFFF, 0x7FFFFF, id="lost-max-24-bit"),
        P("packets_lost", 0x800000, 0x7FFFFF, id="lost-clamped-high"),
        P("packets_lost", -0x800000, -0x800000, id="lost-min-24-bit"),
        P("packets_lost", -0x800001, -0x800000, id="lost-clamped-low"),
        P("highest_seq", (1 << 32) + 3, 3, id="highest-seq-wraps-at-2^32"),
        P("jitter", 0xFFFFFFFF, 0xFFFFFFFF, id="jitter-max"),
        P("fraction_lost", 255, 255, id="fraction-max"),
    ],
)
def test_report_block_field_ranges(field, given, parsed):
    block = ReportBlock(1, 0, 0, 0, 0, 0, 0)
    setattr(block, field, given)
    (report,) = rtcp.parse(rtcp.build_rr(2, [block]))
    assert getattr(report.blocks[0], field) == parsed


# --- SDES ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cname, chunk_len",
    [
        # chunk = ssrc(4) + type(1) + length(1) + text + null(>=1), padded to 32 bits
        P("", 8, id="empty-cname"),
        P("a", 8, id="one-octet-and-null-fill-two-words"),
        P("ab", 12, id="two-octets-spill-into-third-word"),
        P("abcde", 12, id="null-exactly-fills-last-word"),
        P("a" * 255, 264, id="255-octets"),
        P("a" * 300, 264, id="truncated-to-255"),
        P("h\u00e9", 12, id="utf8-length-in-octets"),
    ],
)
def test_sdes_layout(cname, chunk_len):
    data = rtcp.build_sdes(0x01020304, cname)
    version, count, pt, length = fields(data)
    assert (version, count, pt) == (2, 1, rtcp.SDES)
    assert length == len(data) == 4 + chunk_len
    text = cname.encode()[:255]
    assert data[4:8] == b"\x01\x02\x03\x04"
    assert data[8] == 1 and data[9] == len(text)  # CNAME item
    assert data[10 : 10 + len(text)] == text
    assert set(data[10 + len(text) :]) == {0} and len(data[10 + len(text) :]) >= 1  # null-terminated


def test_sdes_is_skipped_not_fatal_in_compound():
    compound = rtcp.build_sr(1, 2, 3, 4, 5) + rtcp.build_sdes(1, "cname") + rtcp.build_pli(1, 9)
    assert rtcp.parse(compound) == [SenderReport(1, 2, 3, 4, 5), Pli(1, 9)]


# --- PSFB: PLI, FIR, REMB -------------------------------------------------------------


def test_pli_round_trip():
    data = rtcp.build_pli(0x11, 0x22)
    assert fields(data) == (2, 1, rtcp.PSFB, 12) and len(data) == 12
    assert rtcp.parse(data) == [Pli(0x11, 0x22)]


def test_pli_and_nack_share_fmt_1_but_not_pt():
    body = struct.pack("!IIHH", 1, 2, 100, 0)
    assert rtcp.parse(packet(1, rtcp.PSFB, body)) == [Pli(1, 2)]
    assert rtcp.parse(packet(1, rtcp.RTPFB, body)) == [Nack(1, 2, [100])]


@pytest.mark.parametrize(
    "seq, entry_seq",
    [P(0, 0, id="seq-0"), P(255, 255, id="seq-255"), P(256, 0, id="seq-wraps-at-256"), P(300, 44, id="seq-300")],
)
def test_fir_round_trip(seq, entry_seq):
    data = rtcp.build_fir(7, 0xBEEF, seq)
    assert fields(data) == (2, 4, rtcp.PSFB, 20) and len(data) == 20
    assert rtcp.parse(data) == [Fir(7, [(0xBEEF, entry_seq)])]


def test_fir_with_several_entries():
    body = struct.pack("!II", 7, 0) + struct.pack("!IB3x", 100, 1) + struct.pack("!IB3x", 200, 2)
    assert rtcp.parse(packet(4, rtcp.PSFB, body)) == [Fir(7, [(100, 1), (200, 2)])]


@pytest.mark.parametrize(
    "bitrate, parsed",
    [
        P(0, 0, id="zero"),
        P(-5, 0, id="negative-is-zero"),
        P(0x3FFFF, 0x3FFFF, id="largest-exact-mantissa"),
        P(0x40000, 0x40000, id="first-exponent-1"),
        P(1_000_000, 1_000_000, id="1-mbps-exact"),
        P(1_000_003, 1_000_000, id="low-bits-truncated"),
        P(2_500_000_000, 152587 << 14, id="2.5-gbps-exponent-14"),
    ],
)
def test_remb_bitrate_round_trip(bitrate, parsed):
    (remb,) = rtcp.parse(rtcp.build_remb(3, bitrate, [0x10]))
    assert remb == Remb(3, parsed, [0x10])
    assert remb.bitrate <= max(0, bitrate) and remb.bitrate >= max(0, bitrate) * (1 - 2**-17)


@pytest.mark.parametrize("ssrcs", [P([], id="no-ssrcs"), P([1], id="one"), P([1, 2, 0xFFFFFFFF], id="three")])
def test_remb_ssrcs_round_trip(ssrcs):
    data = rtcp.build_remb(3, 500_000, ssrcs)
    assert fields(data) == (2, 15, rtcp.PSFB, len(data)) and data[12:16] == b"REMB" and data[16] == len(ssrcs)
    assert rtcp.parse(data) == [Remb(3, 500_000, ssrcs)]


# --- NACK ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lost, fci",
    [
        P([100], [(100, 0x0000)], id="single"),
        P([100, 102, 116], [(100, 0x8002)], id="bits-1-and-15"),
        P(list(range(100, 117)), [(100, 0xFFFF)], id="run-of-17-fills-one-entry"),
        P(list(range(100, 118)), [(100, 0xFFFF), (117, 0x0000)], id="run-of-18-needs-two"),
        P([65534, 65535, 0, 1], [(65534, 0x0007)], id="wraps-at-65535"),
        P([65535, 0, 15], [(65535, 0x8001)], id="pid-65535-bitmask-past-wrap"),
        P([(65530 + i) & 0xFFFF for i in range(17)], [(65530, 0xFFFF)], id="pid-65530-full-bitmask"),
        P([65000, 65535, 3], [(65000, 0x0000), (65535, 0x0008)], id="sparse-across-wrap"),
        P([200, 100], [(200, 0x0000), (100, 0x0000)], id="out-of-order-kept-in-order"),
    ],
)
def test_nack_round_trip(lost, fci):
    data = rtcp.build_nack(0xA, 0xB, lost)
    assert fields(data) == (2, 1, rtcp.RTPFB, len(data))
    assert data[4:12] == struct.pack("!II", 0xA, 0xB)
    assert data[12:] == b"".join(struct.pack("!HH", pid, blp) for pid, blp in fci)
    assert rtcp.parse(data) == [Nack(0xA, 0xB, lost)]


@pytest.mark.parametrize(
    "fci, lost",
    [
        P([(65530, 0xFFFF)], [65530, 65531, 65532, 65533, 65534, 65535] + list(range(11)),
          id="pid-65530-blp-ffff"),
        P([(65535, 0x0001)], [65535, 0], id="pid-65535-bit-0-is-0"),
        P([(65535, 0x8000)], [65535, 15], id="pid-65535-bit-15-is-15"),
        P([(0, 0x0000)], [0], id="pid-0"),
        P([(10, 0x0000), (65535, 0x0003)], [10, 65535, 0, 1], id="two-entries-second-wraps"),
    ],
)
def test_nack_hand_made_bitmask_expands_across_wrap(fci, lost):
    body = struct.pack("!II", 1, 2) + b"".join(struct.pack("!HH", pid, blp) for pid, blp in fci)
    assert rtcp.parse(packet(1, rtcp.RTPFB, body)) == [Nack(1, 2, lost)]


def test_nack_without_fci_is_not_reported():
    assert rtcp.parse(rtcp.build_nack(1, 2, [])) == []


# --- garbage ----------------------------------------------------------------------------

SR_PKT = rtcp.build_sr(1, 2, 3, 4, 5)
RR_PKT = rtcp.build_rr(6, [BLOCK_A])
NACK_PKT = rtcp.build_nack(7, 8, [65535, 0])
PLI_PKT = rtcp.build_pli(9, 10)
SR_ = SenderReport(1, 2, 3, 4, 5)
RR_ = ReceiverReport(6, [BLOCK_A])
NACK_ = Nack(7, 8, [65535, 0])
PLI_ = Pli(9, 10)


def _version(data: bytes, version: int) -> bytes:
    return bytes([(version << 6) | (data[0] & 0x3F)]) + data[1:]


def _length(data: bytes, words: int) -> bytes:
    return data[:2] + struct.pack("!H", words) + data[4:]


@pytest.mark.parametrize(
    "data, parsed",
    [
        P(b"", [], id="empty"),
        P(b"\x80\xc8\x00", [], id="three-bytes"),
        P(b"\x00" * 32, [], id="zeros"),
        P(_version(SR_PKT, 1) + PLI_PKT, [], id="wrong-version-first"),
        P(SR_PKT + _version(RR_PKT, 3) + PLI_PKT, [SR_], id="wrong-version-in-middle"),
        P(SR_PKT + _version(PLI_PKT, 0), [SR_], id="version-0-last"),
        P(_length(SR_PKT, 0xFFFF), [], id="length-overflow-first"),
        P(SR_PKT + _length(PLI_PKT, 3), [SR_], id="length-overflow-by-one-word"),
        P(SR_PKT + PLI_PKT + RR_PKT[:-5], [SR_, PLI_], id="truncated-last-report"),
        P(SR_PKT + NACK_PKT[:-1], [SR_], id="truncated-last-packet"),
        P(SR_PKT + b"\x80\xc9", [SR_], id="trailing-half-header"),
        P(SR_PKT + packet(0, 204, b"\x00\x00\x00\x01name") + PLI_PKT, [SR_, PLI_], id="unknown-pt-skipped"),
        P(packet(0, rtcp.SR, b"\x00" * 4) + PLI_PKT, [PLI_], id="sr-too-short-skipped"),
        P(packet(0, rtcp.RR, b"") + PLI_PKT, [PLI_], id="rr-without-ssrc-skipped"),
        P(packet(1, rtcp.RTPFB, b"\x00" * 8) + PLI_PKT, [PLI_], id="nack-without-fci-skipped"),
        P(packet(3, rtcp.RTPFB, b"\x00" * 12) + PLI_PKT, [PLI_], id="rtpfb-unknown-fmt-skipped"),
        P(packet(1, rtcp.PSFB, b"\x00" * 4) + NACK_PKT, [NACK_], id="psfb-too-short-skipped"),
        P(packet(2, rtcp.PSFB, b"\x00" * 8) + NACK_PKT, [NACK_], id="psfb-sli-skipped"),
        P(packet(15, rtcp.PSFB, b"\x00" * 8 + b"REMB") + PLI_PKT, [PLI_], id="remb-without-bitrate-skipped"),
        P(packet(15, rtcp.PSFB, b"\x00" * 8 + b"XXXX\x00\x00\x00\x00") + PLI_PKT, [PLI_],
          id="afb-not-remb-skipped"),
        P(packet(1, rtcp.RR, struct.pack("!I", 6)) + PLI_PKT, [ReceiverReport(6, []), PLI_],
          id="report-count-exceeds-blocks"),
        P(packet(3, rtcp.RR, RR_PKT[4:]), [RR_], id="report-count-3-one-block-present"),
        P(packet(15, rtcp.PSFB, struct.pack("!II4sB3sI", 1, 0, b"REMB", 5, b"\x00\x00\x10", 0x77)),
          [Remb(1, 16, [0x77])], id="remb-ssrc-count-exceeds"),
        P(packet(4, rtcp.PSFB, struct.pack("!II", 1, 0) + b"\x00\x00\x00\x05"), [Fir(1, [])],
          id="fir-partial-entry-ignored"),
    ],
)
def test_parse_garbage_keeps_what_came_before(data, parsed):
    assert rtcp.parse(data) == parsed


def test_parse_every_truncation_yields_the_complete_prefix():
    pieces = [(SR_PKT, SR_), (RR_PKT, RR_), (NACK_PKT, NACK_), (PLI_PKT, PLI_)]
    compound = b"".join(p for p, _ in pieces)
    assert rtcp.parse(compound) == [item for _, item in pieces]
    for cut in range(len(compound) + 1):
        end, complete = 0, []
        for raw, item in pieces:
            end += len(raw)
            if end <= cut:
                complete.append(item)
        assert rtcp.parse(compound[:cut]) == complete, cut


def test_fuzz_parse_never_raises():
    rng = random.Random(3550)
    compound = SR_PKT + RR_PKT + rtcp.build_sdes(1, "x") + NACK_PKT + PLI_PKT + rtcp.build_fir(1, 2, 3)
    compound += rtcp.build_remb(1, 10**6, [1, 2])
    kinds = (SenderReport, ReceiverReport, Nack, Pli, Fir, Remb)
    for _ in range(2000):
        if rng.random() < 0.3:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
            if data and rng.random() < 0.8:
                data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]
        else:
            buf = bytearray(compound)
            for _ in range(rng.randint(1, 6)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            data = bytes(buf[: rng.randint(0, len(buf))])
        items = rtcp.parse(data)
        assert all(isinstance(item, kinds) for item in items)
