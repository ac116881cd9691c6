"""VP8 picture ID and TL0PICIDX continuity across simulcast switches, and the
down-track's switching and temporal filtering on real packet bytes."""

from __future__ import annotations

import pytest

from sfu.codecs import handler
from sfu.codecs.vp8 import Vp8Munger, keyframe_size, parse_descriptor
from sfu.downtrack import DownTrack
from sfu.published_track import PublishedTrack
from sfu.stream import ReceivedStream
from sfu.stream_reader import ReceivedPacket
from sfu.media_section import CodecInfo, MediaSection

from .packets import rtp_packet, vp8_descriptor, vp8_frame_header
from .sink import Sink

P = pytest.param


def vp8_packet(seq, ts, pid, tl0, tid=0, key=False, ssrc=1, start=True):
    payload = vp8_descriptor(start=start, picture_id=pid, long_picture_id=True, tl0picidx=tl0, tid=tid)
    payload += vp8_frame_header(key) + b"\x00" * 20
    return rtp_packet(seq=seq, ts=ts, ssrc=ssrc, pt=96, payload=payload)


def ids_of(payload: bytes) -> tuple[int, int]:
    d = parse_descriptor(payload, 0)
    pid = ((payload[d.pid_pos] & 0x7F) << 8) | payload[d.pid_pos + 1]
    return pid, payload[d.tl0_pos]


def rewrite(munger: Vp8Munger, packet: bytes) -> tuple[int, int]:
    payload = bytearray(packet[12:])
    munger.rewrite(payload, parse_descriptor(packet, 12), 12)
    return ids_of(bytes(payload))


@pytest.mark.parametrize(
    "first, second, expected",
    [
        P((100, 7), (5000, 200), [(100, 7), (101, 8), (102, 9)], id="switch-continues-ids"),
        P((32766, 255), (10, 3), [(32766, 255), (32767, 0), (0, 1)], id="15-bit-and-8-bit-wrap"),
        P((0, 0), (32767, 255), [(0, 0), (1, 1), (2, 2)], id="new-layer-just-before-its-wrap"),
    ],
)
def test_picture_id_and_tl0_continuous_across_a_switch(first, second, expected):
    munger = Vp8Munger()
    a = vp8_packet(1, 0, *first, key=True)
    munger.switch(a, 12)
    assert rewrite(munger, a) == expected[0]
    b = vp8_packet(2, 3000, *second, key=True)
    munger.switch(b, 12)
    assert rewrite(munger, b) == expected[1]
    after = vp8_packet(3, 6000, (second[0] + 1) & 0x7FFF, (second[1] + 1) & 0xFF)
    assert rewrite(munger, after) == expected[2]


def test_retransmission_does_not_move_the_ids():
    munger = Vp8Munger()
    key = vp8_packet(1, 0, 50, 5, key=True)
    munger.switch(key, 12)
    rewrite(munger, key)
    payload = bytearray(key[12:])
    munger.rewrite(payload, parse_descriptor(key, 12), 12, record=False)
    nxt = vp8_packet(2, 3000, 51, 6)
    assert rewrite(munger, nxt) == (51, 6)


def test_keyframe_size_is_read_from_the_frame_header():
    assert keyframe_size(vp8_packet(1, 0, 1, 1, key=True), 12) == (640, 480)
    assert keyframe_size(vp8_packet(1, 0, 1, 1, key=False), 12) is None


def simulcast_downtrack():
    codec = CodecInfo("video/VP8", 90000, 96)
    track = PublishedTrack("TR", "PA", "video", "0", codec, "camera", rids=["q", "h", "f"])
    streams = [
        ReceivedStream("video", 10 + i, 90000, handler("VP8"), lambda b: None, 1, 256, 0.5, layer=i)
        for i in range(3)
    ]
    for i, stream in enumerate(streams):
        track.set_layer(i, stream)
    sink = Sink()
    downtrack = DownTrack(track, sink)
    downtrack.bind(MediaSection("0", "video", CodecInfo("video/VP8", 90000, 97), {}, [999]))
    track.add_downtrack(downtrack)
    return downtrack, sink


def feed(downtrack, packet, layer, keyframe=False, now=0.0):
    """What ReceivedStream.on_rtp does for each reader of a simulcast VP8 layer."""
    seq = (packet[2] << 8) | packet[3]
    ts = int.from_bytes(packet[4:8], "big")
    downtrack.write(ReceivedPacket(packet, packet[12:], seq, ts, 12, keyframe, now, layer, parse_descriptor(packet, 12)))


def out_ids(sink):
    return [(((p[2] << 8) | p[3]), *ids_of(p[12:])) for p in sink.sent]


def test_downtrack_switches_only_on_a_keyframe_of_the_target_and_stays_continuous():
    downtrack, sink = simulcast_downtrack()
    downtrack.set_target(0)
    feed(downtrack, vp8_packet(100, 0, 10, 1), 0)  # not a keyframe: waits
    assert sink.sent == []
    feed(downtrack, vp8_packet(101, 3000, 11, 2, key=True), 0, keyframe=True)
    feed(downtrack, vp8_packet(102, 6000, 12, 3), 0)
    downtrack.set_target(2)
    feed(downtrack, vp8_packet(7000, 9000, 900, 77), 2)  # high layer, no keyframe yet
    feed(downtrack, vp8_packet(103, 9000, 13, 4), 0)  # low keeps flowing meanwhile
    feed(downtrack, vp8_packet(7001, 12000, 901, 78, key=True), 2, keyframe=True)
    feed(downtrack, vp8_packet(104, 12000, 14, 5), 0)  # low is no longer forwarded
    feed(downtrack, vp8_packet(7002, 15000, 902, 79), 2)
    seqs = [s for s, _, _ in out_ids(sink)]
    pids = [p for _, p, _ in out_ids(sink)]
    tl0s = [t for _, _, t in out_ids(sink)]
    assert len(sink.sent) == 5
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:])] == [1, 1, 1, 1]
    assert [(b - a) & 0x7FFF for a, b in zip(pids, pids[1:])] == [1, 1, 1, 1]
    assert [(b - a) & 0xFF for a, b in zip(tl0s, tl0s[1:])] == [1, 1, 1, 1]
    assert downtrack.current == 2 and downtrack.layer_switches == 1


def test_temporal_layers_above_the_limit_are_dropped_without_gaps():
    downtrack, sink = simulcast_downtrack()
    downtrack.max_temporal = 0
    downtrack.set_target(0)
    feed(downtrack, vp8_packet(1, 0, 1, 1, tid=0, key=True), 0, keyframe=True)
    feed(downtrack, vp8_packet(2, 3000, 2, 1, tid=2), 0)
    feed(downtrack, vp8_packet(3, 6000, 3, 1, tid=1), 0)
    feed(downtrack, vp8_packet(4, 9000, 4, 1, tid=2), 0)
    feed(downtrack, vp8_packet(5, 12000, 5, 2, tid=0), 0)
    seqs = [s for s, _, _ in out_ids(sink)]
    assert len(seqs) == 2 and (seqs[1] - seqs[0]) & 0xFFFF == 1
