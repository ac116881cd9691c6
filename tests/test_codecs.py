"""sfu.codecs: the handler registry, what each handler tells the rest of the
SFU, and the plain handler an unknown codec gets. Each codec's payload
reading has its own file: test_codec_vp8.py, test_codec_h264.py."""

from __future__ import annotations

import pytest

from sfu.codecs import CodecHandler, handler

from .packets import h264_nal, rtp_packet, stap_a, vp8_descriptor, vp8_frame_header

P = pytest.param


@pytest.mark.parametrize(
    "name, expected",
    [
        # (name, kind, munges IDs, FFmpeg name, fits WebM, a start flag marks a frame)
        P("VP8", ("VP8", "video", True, "vp8", True, True), id="VP8"),
        P("vp8", ("VP8", "video", True, "vp8", True, True), id="vp8-lowercase"),
        P("H264", ("H264", "video", False, "h264", False, False), id="H264"),
        P("h264", ("H264", "video", False, "h264", False, False), id="h264-lowercase"),
        P("opus", ("opus", "audio", False, "opus", True, False), id="opus"),
        P("OPUS", ("opus", "audio", False, "opus", True, False), id="OPUS-uppercase"),
        P("VP9", ("", "audio", False, "", False, False), id="unknown-video-codec-gets-the-plain-handler"),
        P("PCMU", ("", "audio", False, "", False, False), id="unknown-audio-codec-gets-the-plain-handler"),
    ],
)
def test_handler_registry(name, expected):
    found = handler(name)
    assert isinstance(found, CodecHandler)
    assert (found.name, found.kind, found.munges_ids, found.ffmpeg_name, found.webm, found.frame_starts) == expected


def test_unknown_codecs_share_one_plain_handler():
    assert handler("VP9") is handler("AV1") and type(handler("VP9")) is CodecHandler


KEY_PACKET = rtp_packet(payload=vp8_descriptor(picture_id=1, tl0picidx=1, tid=0) + vp8_frame_header(True))
IDR_PACKET = rtp_packet(payload=stap_a([h264_nal(7), h264_nal(8), h264_nal(5)]))


@pytest.mark.parametrize("name", [P("opus", id="opus"), P("VP9", id="unknown")])
def test_audio_and_unknown_codecs_detect_and_munge_nothing(name):
    """Whatever the bytes say (here a VP8 and an H.264 keyframe), a codec
    with nothing to detect finds no keyframe, no size, no descriptor."""
    codec = handler(name)
    for packet in (KEY_PACKET, IDR_PACKET):
        assert codec.is_keyframe(packet, 12) is False
        assert codec.frame_size(packet, 12) is None
        assert codec.describe(packet, 12, len(packet)) is None
    assert codec.id_munger() is None


@pytest.mark.parametrize("name", [P("opus", id="opus"), P("VP9", id="unknown")])
def test_audio_and_unknown_payloads_are_frames_as_they_are(name):
    """One packet, one frame: the payload is the codec's bitstream, and every frame stands alone."""
    codec = handler(name)
    payload = b"\x78\x01\x02\x03"
    assert codec.depacketize(payload) == (True, payload)
    assert codec.frame_is_keyframe(payload) is True
    assert codec.picture_size(payload) is None and codec.extradata(payload) == b""


@pytest.mark.parametrize(
    "name, packet, keyframe, size, described",
    [
        P("VP8", KEY_PACKET, True, (640, 480), True, id="VP8"),
        P("H264", IDR_PACKET, True, None, False, id="H264"),
    ],
)
def test_a_video_handler_answers_for_its_own_keyframe(name, packet, keyframe, size, described):
    codec = handler(name)
    assert codec.is_keyframe(packet, 12) is keyframe
    assert codec.frame_size(packet, 12) == size
    assert (codec.describe(packet, 12, len(packet)) is not None) is described
    assert (codec.id_munger() is not None) is codec.munges_ids
