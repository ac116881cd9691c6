"""Depacketizing real aiortc RTP payloads back into decodable frames, each
codec through its handler."""

from __future__ import annotations

import av
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder

from sfu.codecs import handler
from sfu.depacketizer import KEYFRAME_RETRY_FRAMES, VIDEO_HOLD_TICKS, Depacketizer

from .media import PatternVideoTrack, ToneAudioTrack
from .packets import fu_a, h264_nal, stap_a, vp8_descriptor, vp8_frame_header

P = pytest.param


async def encoded_packets(encoder, count: int = 20) -> list[tuple[int, int, bool, bytes]]:
    """(seq, ts, marker, payload) of ``count`` real frames."""
    track = PatternVideoTrack(320, 240)
    packets, seq = [], 65530  # wraps around
    for i in range(count):
        frame = await track.recv()
        payloads, ts = encoder.encode(frame, force_keyframe=(i == 0))
        for n, payload in enumerate(payloads):
            packets.append((seq & 0xFFFF, ts, n == len(payloads) - 1, payload))
            seq += 1
    return packets


def decode(codec: str, frames) -> list:
    decoder = av.CodecContext.create(codec, "r")
    return [f for fr in frames for f in decoder.decode(av.Packet(fr.data))]


@pytest.mark.parametrize("name,encoder,decoder", [("VP8", Vp8Encoder, "vp8"), ("H264", H264Encoder, "h264")],
                         ids=["vp8", "h264"])
async def test_reordered_packets_become_decodable_frames(name, encoder, decoder):
    packets = await encoded_packets(encoder())
    shuffled = packets[:]
    for i in range(1, len(shuffled) - 1, 3):  # neighbours swapped all along (after the first)
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    depacketizer = Depacketizer(handler(name))
    frames = [f for p in shuffled for f in depacketizer.push(*p)] + depacketizer.flush()
    assert len(frames) == 20 and frames[0].keyframe
    assert [(p.width, p.height) for p in decode(decoder, frames)][-1] == (320, 240)


async def test_a_lost_packet_drops_frames_until_the_next_keyframe():
    packets = await encoded_packets(Vp8Encoder(), 10)
    asked = []
    depacketizer = Depacketizer(handler("VP8"), lambda: asked.append(1))
    lost = next(i for i, p in enumerate(packets) if p[1] != packets[0][1]) + 1  # inside frame 2 or 3
    frames = [f for i, p in enumerate(packets) if i != lost for f in depacketizer.push(*p)] + depacketizer.flush()
    assert asked == [1]
    assert all(f.timestamp < packets[lost][1] for f in frames)  # nothing after the loss: no keyframe came
    assert len(decode("vp8", frames)) == len(frames)


async def test_a_keyframe_that_does_not_come_is_asked_for_again():
    """The first request (or the keyframe it brought) can be lost as well:
    waiting must not last until the publisher happens to send one."""
    packets = await encoded_packets(Vp8Encoder(), 2 + 2 * KEYFRAME_RETRY_FRAMES)
    asked = []
    depacketizer = Depacketizer(handler("VP8"), lambda: asked.append(1))
    second = next(i for i, p in enumerate(packets) if p[1] != packets[0][1])
    frames = [f for i, p in enumerate(packets) if i != second for f in depacketizer.push(*p)] + depacketizer.flush()
    assert len(frames) == 1  # only the first keyframe: everything after the loss waits
    assert len(asked) == 3  # the loss, then again after each KEYFRAME_RETRY_FRAMES frames without a keyframe (60 follow)


async def test_a_low_rate_stream_gives_up_on_a_lost_packet_after_half_a_second():
    """320x240 is one packet a frame: waiting for the reorder window's 128
    packets would freeze a recording's tile for four seconds before it even
    asks for a keyframe."""
    packets = await encoded_packets(Vp8Encoder(), 40)
    asked = []
    depacketizer = Depacketizer(handler("VP8"), lambda: asked.append(1))
    second = next(i for i, p in enumerate(packets) if p[1] != packets[0][1])
    for i, packet in enumerate(packets):
        if i != second:
            depacketizer.push(*packet)
        if asked:
            break
    assert asked, "no keyframe asked for within 40 frames"
    waited = packet[1] - packets[second][1]
    assert waited <= VIDEO_HOLD_TICKS + 9000, f"gave up after {waited / 90000:.2f} s of media"


async def test_audio_is_one_frame_per_packet_back_in_order():
    track, encoder = ToneAudioTrack(), OpusEncoder()
    packets = []
    for i in range(10):
        payloads, ts = encoder.encode(await track.recv())
        packets.append((i, ts, True, payloads[0]))
    shuffled = packets[:]
    for i in range(1, len(shuffled) - 1, 3):  # neighbours swapped all along (after the first)
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    depacketizer = Depacketizer(handler("opus"))
    frames = [f for p in shuffled for f in depacketizer.push(*p)] + depacketizer.flush()
    assert [(f.timestamp, f.data, f.keyframe) for f in frames] == [(p[1], p[3], True) for p in packets]
    assert len(decode(handler("opus").ffmpeg_name, frames)) == 10


VP8_KEY = vp8_descriptor(picture_id=1) + vp8_frame_header(True)


@pytest.mark.parametrize(
    "name, payloads, kept",
    [
        P("VP8", [VP8_KEY, vp8_descriptor(start=False) + b"\x01"], True, id="vp8-one-start"),
        P("VP8", [VP8_KEY, vp8_descriptor(picture_id=2) + b"\x01"], False, id="vp8-second-start-is-damage"),
        P("H264", [stap_a([h264_nal(7), h264_nal(8)]), fu_a(5, start=True), fu_a(5, start=False, end=True)],
          True, id="h264-a-start-per-nal-unit"),
        P("H264", [fu_a(5, start=False), fu_a(5, start=False, end=True)], False, id="h264-no-start"),
    ],
)
def test_a_frame_is_kept_only_when_it_starts_as_its_codec_says(name, payloads, kept):
    depacketizer = Depacketizer(handler(name))
    packets = [(seq, 3000, seq == len(payloads) - 1, payload) for seq, payload in enumerate(payloads)]
    frames = [f for p in packets for f in depacketizer.push(*p)]
    assert [f.keyframe for f in frames] == ([True] if kept else [])
    assert depacketizer.frames_dropped == (0 if kept else 1)
