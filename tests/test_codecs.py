"""sfu.codecs: keyframe detection on VP8 and H.264 RTP payloads."""

from __future__ import annotations

import pytest

from sfu import rtp
from sfu.codecs import h264, handler, vp8

from .packets import fu_a, h264_nal, one_byte_ext, rtp_packet, stap_a, vp8_descriptor, vp8_frame_header

P = pytest.param

KEY = vp8_frame_header(keyframe=True)
DELTA = vp8_frame_header(keyframe=False)

# Skipped descriptor octets are odd in key frame rows and even in delta frame
# rows, so reading the P bit one octet off flips the answer.
ALL_ODD = dict(picture_id=0x1235, long_picture_id=True, tl0picidx=0x55, tid=1, layer_sync=True, keyidx=1)
ALL_EVEN = dict(picture_id=0x1234, long_picture_id=True, tl0picidx=0x54, tid=2, keyidx=0)


def framing(request_param: str, payload: bytes) -> tuple[bytes, int]:
    """The payload alone (offset 0) or inside a full RTP packet (offset past the header)."""
    if request_param == "bare":
        return payload, 0
    packet = rtp_packet(csrcs=[1], extension=one_byte_ext([(1, b"\x01\x01\x01")]), payload=payload)
    return packet, rtp.payload_offset(packet)


FRAMINGS = pytest.mark.parametrize("framed", [P("bare", id="bare"), P("rtp", id="in-rtp")])


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
def test_vp8_is_keyframe(framed, payload, keyframe):
    packet, offset = framing(framed, payload)
    assert vp8.is_keyframe(packet, offset) is keyframe


@pytest.mark.parametrize("offset", [P(2, id="at-end"), P(10, id="past-end")])
def test_vp8_offset_out_of_range(offset):
    assert vp8.is_keyframe(vp8_descriptor() + b"\x00", offset) is False


IDR, SPS, PPS, SEI, SLICE, AUD = 5, 7, 8, 6, 1, 9


@FRAMINGS
@pytest.mark.parametrize(
    "payload, keyframe",
    [
        P(h264_nal(IDR), True, id="single-idr"),
        P(h264_nal(SPS), True, id="single-sps"),
        P(h264_nal(IDR, nri=0), True, id="single-idr-nri-0"),
        P(h264_nal(PPS), False, id="single-pps"),
        P(h264_nal(SLICE), False, id="single-non-idr-slice"),
        P(h264_nal(SEI), False, id="single-sei"),
        P(h264_nal(AUD, b"\xf0"), False, id="single-aud"),
        P(stap_a([h264_nal(SPS), h264_nal(PPS), h264_nal(IDR)]), True, id="stap-a-sps-pps-idr"),
        P(stap_a([h264_nal(SPS), h264_nal(PPS)]), True, id="stap-a-sps-pps"),
        P(stap_a([h264_nal(SEI), h264_nal(IDR)]), True, id="stap-a-idr-second"),
        P(stap_a([h264_nal(SEI), h264_nal(PPS, b"\x07\x07"), h264_nal(IDR)]), True, id="stap-a-idr-third"),
        P(stap_a([h264_nal(PPS), h264_nal(SLICE)]), False, id="stap-a-pps-slice"),
        P(stap_a([h264_nal(SEI, b"\x05" * 40)]), False, id="stap-a-sei-body-full-of-5s"),
        P(stap_a([h264_nal(PPS)]) + b"\x00\x64" + h264_nal(SPS), False, id="stap-a-size-overruns-stops"),
        P(stap_a([h264_nal(PPS)]) + b"\x00\x00" + h264_nal(SPS), False, id="stap-a-zero-size-stops"),
        P(stap_a([h264_nal(IDR)]) + b"\x00\x64\x01", True, id="stap-a-idr-before-damage"),
        P(stap_a([]), False, id="stap-a-header-only"),
        P(stap_a([]) + b"\x00", False, id="stap-a-half-size-field"),
        P(fu_a(IDR, start=True), True, id="fu-a-idr-start"),
        P(fu_a(IDR, start=True, end=True), True, id="fu-a-idr-start-and-end"),
        P(fu_a(IDR, start=False), False, id="fu-a-idr-middle"),
        P(fu_a(IDR, start=False, end=True), False, id="fu-a-idr-end"),
        P(fu_a(SPS, start=True), True, id="fu-a-sps-start"),
        P(fu_a(SLICE, start=True), False, id="fu-a-slice-start"),
        P(fu_a(IDR, start=True, body=b"")[:1], False, id="fu-a-without-fu-header"),
        P(b"", False, id="empty-payload"),
    ],
)
def test_h264_is_keyframe(framed, payload, keyframe):
    packet, offset = framing(framed, payload)
    assert h264.is_keyframe(packet, offset) is keyframe


@pytest.mark.parametrize(
    "name, handler_name, kind, munges_ids",
    [
        P("VP8", "VP8", "video", True, id="VP8"),
        P("vp8", "VP8", "video", True, id="vp8-lowercase"),
        P("H264", "H264", "video", False, id="H264"),
        P("h264", "H264", "video", False, id="h264-lowercase"),
        P("opus", "opus", "audio", False, id="opus"),
        P("VP9", "", "audio", False, id="unknown-codec-gets-the-plain-handler"),
    ],
)
def test_handler_registry(name, handler_name, kind, munges_ids):
    found = handler(name)
    assert (found.name, found.kind, found.munges_ids) == (handler_name, kind, munges_ids)


def test_only_a_codec_with_keyframes_finds_one():
    key = rtp_packet(payload=vp8_descriptor(start=True) + vp8_frame_header(True))
    assert handler("VP8").is_keyframe(key, 12) and handler("VP8").frame_size(key, 12) == (640, 480)
    assert not handler("opus").is_keyframe(key, 12) and handler("opus").frame_size(key, 12) is None
    assert handler("opus").id_munger() is None and handler("H264").id_munger() is None
