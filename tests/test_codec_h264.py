"""The H.264 handler on RTP payload bytes (RFC 6184): keyframes, and payloads
back to Annex B frames with the parameter sets a recording stores."""

from __future__ import annotations

import pytest

from sfu.codecs import handler

from .packets import bare, fu_a, h264_nal, in_rtp, rtp_packet, stap_a

P = pytest.param
H264 = handler("H264")
IDR, SPS, PPS, SEI, SLICE, AUD = 5, 7, 8, 6, 1, 9
START = b"\x00\x00\x00\x01"


FRAMINGS = pytest.mark.parametrize("framing", [P(bare, id="bare"), P(in_rtp, id="in-rtp")])


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
def test_is_keyframe(framing, payload, keyframe):
    packet, offset = framing(payload)
    assert H264.is_keyframe(packet, offset) is keyframe


def test_nothing_to_describe_or_munge():
    """Each layer's IDR restarts the decoder: a switch needs no payload rewrite."""
    packet = rtp_packet(payload=stap_a([h264_nal(SPS), h264_nal(PPS), h264_nal(IDR)]))
    assert H264.frame_size(packet, 12) is None and H264.describe(packet, 12, len(packet)) is None
    assert H264.id_munger() is None and not H264.munges_ids


# --- payloads back to Annex B frames (recorder, taps) ------------------------------------


@pytest.mark.parametrize(
    "payload, start, data",
    [
        P(h264_nal(IDR), True, START + h264_nal(IDR), id="single-nal"),
        P(h264_nal(SLICE, nri=0), True, START + h264_nal(SLICE, nri=0), id="single-nal-nri-0"),
        P(stap_a([h264_nal(SPS, b"\x42"), h264_nal(PPS, b"\xce"), h264_nal(IDR)]), True,
          START + h264_nal(SPS, b"\x42") + START + h264_nal(PPS, b"\xce") + START + h264_nal(IDR),
          id="stap-a-three-units"),
        P(stap_a([h264_nal(SPS)]) + b"\x00\x64" + h264_nal(PPS), True, START + h264_nal(SPS),
          id="stap-a-stops-at-a-size-that-overruns"),
        P(stap_a([h264_nal(SPS)]) + b"\x00\x00" + h264_nal(PPS), True, START + h264_nal(SPS),
          id="stap-a-stops-at-a-zero-size"),
        P(stap_a([]), True, b"", id="stap-a-header-only"),
        P(fu_a(IDR, start=True, body=b"\x01\x02"), True, START + h264_nal(IDR, b"\x01\x02"), id="fu-a-start"),
        P(fu_a(IDR, start=True, body=b"\x01", nri=1), True, START + h264_nal(IDR, b"\x01", nri=1),
          id="fu-a-start-keeps-nri"),
        P(fu_a(IDR, start=False, body=b"\x03\x04"), False, b"\x03\x04", id="fu-a-middle"),
        P(fu_a(IDR, start=False, end=True, body=b"\x05"), False, b"\x05", id="fu-a-end"),
        P(fu_a(IDR, start=True)[:1], False, b"", id="fu-a-without-fu-header"),
        P(bytes([0x60 | 25]) + b"\x00\x01\x00", False, b"", id="stap-b-unused-by-webrtc"),
        P(bytes([0x60 | 29, 0x85]) + b"\x00", False, b"", id="fu-b-unused-by-webrtc"),
        P(b"", False, b"", id="empty"),
    ],
)
def test_depacketize(payload, start, data):
    assert H264.depacketize(payload) == (start, data)


def test_fragments_join_into_the_nal_unit():
    nal = h264_nal(IDR, bytes(range(200)))
    body = nal[1:]
    fragments = [fu_a(IDR, start=True, body=body[:70]), fu_a(IDR, start=False, body=body[70:140]),
                 fu_a(IDR, start=False, end=True, body=body[140:])]
    assert b"".join(H264.depacketize(f)[1] for f in fragments) == START + nal


@pytest.mark.parametrize(
    "units, keyframe, extradata",
    [
        P([h264_nal(SPS, b"\x42"), h264_nal(PPS, b"\xce"), h264_nal(IDR)], True,
          START + h264_nal(SPS, b"\x42") + START + h264_nal(PPS, b"\xce"), id="sps-pps-idr"),
        P([h264_nal(SEI), h264_nal(IDR)], True, b"", id="idr-without-parameter-sets"),
        P([h264_nal(SPS), h264_nal(PPS)], False, START + h264_nal(SPS) + START + h264_nal(PPS),
          id="parameter-sets-without-idr"),
        P([h264_nal(SLICE), h264_nal(SLICE)], False, b"", id="slices"),
        P([h264_nal(AUD, b"\xf0"), h264_nal(SLICE, b"\x05\x05")], False, b"", id="a-5-in-a-body-is-no-idr"),
        P([], False, b"", id="empty"),
    ],
)
def test_whole_frames_keyframe_and_extradata(units, keyframe, extradata):
    """A whole frame is a keyframe when it holds an IDR; its SPS and PPS are what a container stores."""
    data = b"".join(START + unit for unit in units)
    assert H264.frame_is_keyframe(data) is keyframe
    assert H264.extradata(data) == extradata
    assert H264.picture_size(data) is None  # the recorder decodes the first keyframe for its size
