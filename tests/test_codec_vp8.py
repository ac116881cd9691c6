"""The VP8 handler on RTP payload bytes: keyframes, the picture size a key
frame announces, the descriptor simulcast forwarding reads, picture IDs kept
continuous across a switch, and payloads back to VP8 frames."""

from __future__ import annotations

import pytest

from sfu.codecs import handler

from .packets import bare, in_rtp, rtp_packet, vp8_descriptor, vp8_frame_header

P = pytest.param
VP8 = handler("VP8")

KEY = vp8_frame_header(keyframe=True)
DELTA = vp8_frame_header(keyframe=False)
BODY = b"\xde\xad\xbe\xef"

# Skipped descriptor octets are odd in key frame rows and even in delta frame
# rows, so reading the P bit one octet off flips the answer.
ALL_ODD = dict(picture_id=0x1235, long_picture_id=True, tl0picidx=0x55, tid=1, layer_sync=True, keyidx=1)
ALL_EVEN = dict(picture_id=0x1234, long_picture_id=True, tl0picidx=0x54, tid=2, keyidx=0)


FRAMINGS = pytest.mark.parametrize("framing", [P(bare, id="bare"), P(in_rtp, id="in-rtp")])


# --- keyframes ----------------------------------------------------------------------


@FRAMINGS
@pytest.mark.parametrize(
    "payload, keyframe",
    [
        P(vp8_descriptor() + KEY, True, id="minimal-descriptor-key"),
        P(vp8_descriptor() + DELTA, False, id="minimal-descriptor-delta"),
        P(vp8_descriptor(picture_id=0x11) + KEY, True, id="7-bit-picture-id-key"),
        P(vp8_descriptor(picture_id=0x10) + DELTA, False, id="7-bit-picture-id-delta"),
        P(vp8_descriptor(picture_id=0x1235, long_picture_id=True) + KEY, True, id="15-bit-picture-id-key"),
        P(vp8_descriptor(picture_id=0x1234, long_picture_id=True) + DELTA, False, id="15-bit-picture-id-delta"),
        P(vp8_descriptor(tl0picidx=0x55) + KEY, True, id="tl0picidx-key"),
        P(vp8_descriptor(tl0picidx=0x54) + DELTA, False, id="tl0picidx-delta"),
        P(vp8_descriptor(tid=1, layer_sync=True, keyidx=1) + KEY, True, id="tid-keyidx-key"),
        P(vp8_descriptor(tid=2) + DELTA, False, id="tid-delta"),
        P(vp8_descriptor(keyidx=3) + KEY, True, id="keyidx-only-key"),
        P(vp8_descriptor(**ALL_ODD) + KEY, True, id="all-extensions-key"),
        P(vp8_descriptor(**ALL_EVEN) + DELTA, False, id="all-extensions-delta"),
        P(vp8_descriptor(non_reference=True) + KEY, True, id="non-reference-bit-irrelevant"),
        P(vp8_descriptor(start=False) + KEY, False, id="continuation-of-key-frame"),
        P(vp8_descriptor(start=True, partition=1) + KEY, False, id="start-of-partition-1"),
        P(vp8_descriptor(start=False, partition=2, **ALL_ODD) + KEY, False, id="later-partition-extended"),
        P(b"", False, id="empty-payload"),
        P(vp8_descriptor(), False, id="descriptor-without-frame"),
        P(b"\x90", False, id="x-bit-without-extension-octet"),
        P(b"\x90\x80", False, id="i-bit-without-picture-id"),
        P(b"\x90\x80\x80", False, id="15-bit-picture-id-cut"),
        P(vp8_descriptor(**ALL_ODD), False, id="all-extensions-without-frame"),
    ],
)
def test_is_keyframe(framing, payload, keyframe):
    packet, offset = framing(payload)
    assert VP8.is_keyframe(packet, offset) is keyframe


@pytest.mark.parametrize("offset", [P(2, id="at-end"), P(10, id="past-end")])
def test_offset_out_of_range_is_no_keyframe(offset):
    assert VP8.is_keyframe(vp8_descriptor() + b"\x00", offset) is False


# --- the picture size a key frame announces --------------------------------------------


@FRAMINGS
@pytest.mark.parametrize(
    "payload, size",
    [
        P(vp8_descriptor() + KEY, (640, 480), id="minimal-descriptor"),
        P(vp8_descriptor(**ALL_ODD) + vp8_frame_header(True, 1280, 720), (1280, 720), id="all-extensions-720p"),
        P(vp8_descriptor(picture_id=5) + vp8_frame_header(True, 320 | 3 << 14, 180 | 3 << 14), (320, 180), id="upscaling-bits-ignored"),
        P(vp8_descriptor(tid=0) + vp8_frame_header(True, 16383, 1), (16383, 1), id="largest-width"),
        P(vp8_descriptor() + DELTA + bytes(8), None, id="delta-frame"),
        P(vp8_descriptor(start=False) + KEY, None, id="continuation-packet"),
        P(vp8_descriptor(partition=1) + KEY, None, id="partition-1"),
        P(vp8_descriptor() + KEY[:9], None, id="header-cut-short"),
        P(vp8_descriptor() + KEY[:3] + b"\x9d\x01\x2b" + KEY[6:], None, id="wrong-start-code"),
        P(b"\x90\x80", None, id="descriptor-cut-short"),
        P(b"", None, id="empty-payload"),
    ],
)
def test_frame_size(framing, payload, size):
    packet, offset = framing(payload)
    assert VP8.frame_size(packet, offset) == size


@pytest.mark.parametrize(
    "data, size",
    [
        P(KEY + BODY, (640, 480), id="key-frame"),
        P(vp8_frame_header(True, 1920, 1080) + BODY, (1920, 1080), id="key-frame-1080p"),
        P(DELTA + bytes(10), None, id="delta-frame"),
        P(KEY[:9], None, id="cut-short"),
        P(b"", None, id="empty"),
    ],
)
def test_picture_size_of_a_whole_frame(data, size):
    assert VP8.picture_size(data) == size


# --- the descriptor simulcast forwarding reads -------------------------------------------


@FRAMINGS
@pytest.mark.parametrize(
    "payload, expected",
    [
        # expected: (start, tid, picture ID position past the offset, its bits, TL0PICIDX position)
        P(vp8_descriptor() + KEY, (True, 0, None, 0, None), id="minimal"),
        P(vp8_descriptor(start=False) + BODY, (False, 0, None, 0, None), id="continuation"),
        P(vp8_descriptor(partition=1) + BODY, (False, 0, None, 0, None), id="partition-1-is-no-start"),
        P(vp8_descriptor(picture_id=0x11) + BODY, (True, 0, 2, 7, None), id="7-bit-picture-id"),
        P(vp8_descriptor(picture_id=0x1234, long_picture_id=True) + BODY, (True, 0, 2, 15, None),
          id="15-bit-picture-id"),
        P(vp8_descriptor(tl0picidx=9) + BODY, (True, 0, None, 0, 2), id="tl0picidx-alone"),
        P(vp8_descriptor(picture_id=3, tl0picidx=9) + BODY, (True, 0, 2, 7, 3), id="7-bit-picture-id-and-tl0"),
        P(vp8_descriptor(tid=2) + BODY, (True, 2, None, 0, None), id="tid-2"),
        P(vp8_descriptor(keyidx=4) + BODY, (True, 0, None, 0, None), id="keyidx-without-tid"),
        P(vp8_descriptor(start=False, **ALL_ODD) + BODY, (False, 1, 2, 15, 4), id="all-extensions"),
    ],
)
def test_describe(framing, payload, expected):
    packet, offset = framing(payload)
    found = VP8.describe(packet, offset, len(packet))
    start, tid, pid_at, pid_bits, tl0_at = expected
    assert (found.start, found.tid, found.pid_bits) == (start, tid, pid_bits)
    assert found.pid_pos == (-1 if pid_at is None else offset + pid_at)
    assert found.tl0_pos == (-1 if tl0_at is None else offset + tl0_at)


@pytest.mark.parametrize(
    "payload, end",
    [
        P(b"", 0, id="empty"),
        P(b"\x90", 1, id="x-bit-without-extension-octet"),
        P(b"\x90\x80", 2, id="i-bit-without-picture-id"),
        P(b"\x90\x80\x80", 3, id="15-bit-picture-id-cut"),
        P(b"\x90\x20", 2, id="t-bit-without-tid-octet"),
        P(vp8_descriptor(tl0picidx=1) + BODY, 2, id="tl0picidx-in-the-padding"),
        P(vp8_descriptor(tid=1) + BODY, 2, id="tid-octet-in-the-padding"),
    ],
)
def test_describe_refuses_a_cut_descriptor(payload, end):
    """``end`` stops before RTP padding: a descriptor that reaches past it is malformed."""
    assert VP8.describe(payload, 0, end) is None


# --- picture IDs across a simulcast switch -------------------------------------------------


def simulcast_packet(pid: int, tl0: int | None, long_pid: bool = True, key: bool = False) -> bytes:
    payload = vp8_descriptor(picture_id=pid, long_picture_id=long_pid, tl0picidx=tl0, tid=0)
    return rtp_packet(payload=payload + vp8_frame_header(key) + BODY)


def forwarded_ids(munger, packet: bytes) -> tuple[int, int | None]:
    """What a down-track sends: the IDs after ``rewrite`` (positions relative to the payload)."""
    description = VP8.describe(packet, 12, len(packet))
    payload = bytearray(packet[12:])
    munger.rewrite(payload, description, 12)
    out = VP8.describe(bytes(payload), 0, len(payload))
    pid = payload[out.pid_pos] & 0x7F
    if out.pid_bits == 15:
        pid = pid << 8 | payload[out.pid_pos + 1]
    return pid, payload[out.tl0_pos] if out.tl0_pos >= 0 else None


@pytest.mark.parametrize(
    "long_pid, before, after, expected",
    [
        # (picture ID, TL0PICIDX) of the old layer's key frame and of the new layer's;
        # expected: the IDs sent for those, then for the new layer's next packet
        P(False, (40, 3), (100, 50), [(40, 3), (41, 4), (42, 5)], id="7-bit-picture-ids"),
        P(False, (127, 255), (9, 9), [(127, 255), (0, 0), (1, 1)], id="7-bit-and-tl0-wrap"),
        P(True, (500, None), (7000, None), [(500, None), (501, None), (502, None)], id="no-tl0picidx"),
        P(True, (10, 10), (11, 11), [(10, 10), (11, 11), (12, 12)], id="ids-already-continuous"),
    ],
)
def test_id_munger_keeps_ids_continuous_across_a_switch(long_pid, before, after, expected):
    munger = VP8.id_munger()
    seen = []
    for pid, tl0 in (before, after):  # each layer starts at a key frame
        key = simulcast_packet(pid, tl0, long_pid, key=True)
        munger.switch(key, 12)
        seen.append(forwarded_ids(munger, key))
    pid, tl0 = after
    next_pid = (pid + 1) & (0x7FFF if long_pid else 0x7F)
    seen.append(forwarded_ids(munger, simulcast_packet(next_pid, None if tl0 is None else tl0 + 1, long_pid)))
    assert seen == expected


def test_a_retransmission_goes_out_with_the_offsets_it_first_had():
    munger = VP8.id_munger()
    munger.switch(simulcast_packet(10, 1, key=True), 12)
    forwarded_ids(munger, simulcast_packet(10, 1, key=True))
    first_offsets = munger.offsets
    munger.switch(simulcast_packet(900, 90, key=True), 12)
    assert munger.offsets != first_offsets
    old = simulcast_packet(10, 1, key=True)
    payload = bytearray(old[12:])
    munger.rewrite(payload, VP8.describe(old, 12, len(old)), 12, record=False, offsets=first_offsets)
    assert payload == bytearray(old[12:])  # as first sent: the offsets then were zero
    assert forwarded_ids(munger, simulcast_packet(900, 90, key=True)) == (11, 2)


# --- payloads back to VP8 frames (recorder, taps) ------------------------------------------


@pytest.mark.parametrize(
    "payload, start, data",
    [
        P(vp8_descriptor() + KEY, True, KEY, id="minimal-descriptor"),
        P(vp8_descriptor(**ALL_ODD) + BODY, True, BODY, id="all-extensions-stripped"),
        P(vp8_descriptor(picture_id=5) + BODY, True, BODY, id="7-bit-picture-id-stripped"),
        P(vp8_descriptor(start=False, tl0picidx=1) + BODY, False, BODY, id="continuation"),
        P(vp8_descriptor(partition=2) + BODY, False, BODY, id="later-partition"),
        P(vp8_descriptor(), True, b"", id="descriptor-only"),
        P(b"\x90", True, b"", id="x-bit-without-extension-octet"),
        P(b"\x90\x80", True, b"", id="i-bit-without-picture-id"),
        P(b"", False, b"", id="empty"),
    ],
)
def test_depacketize(payload, start, data):
    assert VP8.depacketize(payload) == (start, data)


@pytest.mark.parametrize(
    "data, keyframe",
    [P(KEY + BODY, True, id="key"), P(DELTA + BODY, False, id="delta"), P(b"", False, id="empty")],
)
def test_frame_is_keyframe(data, keyframe):
    assert VP8.frame_is_keyframe(data) is keyframe
