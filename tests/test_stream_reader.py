"""The reader interface of a received stream (sfu/stream_reader.py): every
reader kind has it, a stream parses each packet once for all of them, and a
down-track's send plan never outlives the route it was built for."""

from __future__ import annotations

import inspect

import pytest

from sfu import rtcp
from sfu.codecs import handler
from sfu.depacketizer import QueueReader
from sfu.downtrack import DownTrack
from sfu.layer_reader import LayerReader
from sfu.media_section import CodecInfo, MediaSection
from sfu.published_track import PublishedTrack
from sfu.relay import RelaySink
from sfu.rtp import HEADER
from sfu.stream import ReceivedStream
from sfu.stream_reader import ReceivedPacket, StreamReader

from .packets import rtp_packet, vp8_descriptor, vp8_frame_header
from .sink import Sink

SSRC = 0x1111


class Recorder:
    """A reader that keeps what it is handed."""

    def __init__(self) -> None:
        self.packets: list[ReceivedPacket] = []
        self.reports: list[tuple] = []

    def write(self, packet: ReceivedPacket) -> None:
        self.packets.append(packet)

    def send_sender_report(self, report, layer: int) -> None:
        self.reports.append((report, layer))


@pytest.mark.parametrize("reader", [DownTrack, RelaySink, LayerReader, QueueReader, Recorder])
def test_every_reader_kind_has_the_interface(reader):
    for name in ("write", "send_sender_report"):
        wanted = list(inspect.signature(getattr(StreamReader, name)).parameters)
        assert list(inspect.signature(getattr(reader, name)).parameters)[:len(wanted)] == wanted


def vp8_stream(layer: int = 0, describe: bool = False) -> ReceivedStream:
    return ReceivedStream("video", SSRC, 90000, handler("VP8"), lambda packet: None, 1, 64, 0.5,
                          layer=layer, describe=describe)


def vp8(seq: int, key: bool = False, padding: int = 0, picture_id: int = 7) -> bytes:
    payload = vp8_descriptor(picture_id=picture_id, tl0picidx=3, tid=1) + vp8_frame_header(key) + bytes(10)
    return rtp_packet(seq=seq, ts=seq * 3000, ssrc=SSRC, payload=payload, padding=padding)


async def test_each_reader_gets_the_same_packet_parsed_once():
    stream = vp8_stream(layer=2, describe=True)
    first, second = Recorder(), Recorder()
    stream.add_reader(first)
    stream.add_reader(second)
    stream.add_reader(first)  # twice: still read once
    data = vp8(100, key=True, padding=4)
    stream.on_rtp(data, 12.5)
    [packet] = first.packets
    assert second.packets == [packet]
    assert (packet.data, packet.seq, packet.ts, packet.layer, packet.arrival) == (data, 100, 300000, 2, 12.5)
    assert packet.keyframe and packet.offset == 12 and packet.marker == 0
    assert packet.payload == data[12:-4]  # RTP padding left out
    assert packet.description.tid == 1 and packet.description.start
    stream.keyframes.close()


@pytest.mark.parametrize(
    "codec, describe, described",
    [("VP8", True, True), ("VP8", False, False), ("H264", True, False), ("opus", True, False)],
)
async def test_only_simulcast_vp8_is_described(codec, describe, described):
    kind = "audio" if codec == "opus" else "video"
    stream = ReceivedStream(kind, SSRC, 90000, handler(codec), lambda packet: None, 1, 64, 0.5, describe=describe)
    reader = Recorder()
    stream.add_reader(reader)
    stream.on_rtp(vp8(1), 0.0)
    assert (reader.packets[0].description is not None) is described
    stream.keyframes.close()


async def test_a_removed_reader_hears_nothing_more():
    stream = vp8_stream()
    reader = Recorder()
    stream.add_reader(reader)
    stream.on_rtp(vp8(1), 0.0)
    stream.remove_reader(reader)
    stream.remove_reader(reader)  # twice: harmless
    stream.on_rtp(vp8(2), 0.0)
    stream.on_sender_report(rtcp.SenderReport(SSRC, 1 << 32, 3000, 1, 100), 0.0)
    assert [p.seq for p in reader.packets] == [1] and reader.reports == []
    assert not stream.has_reader(reader)
    stream.keyframes.close()


async def test_sender_reports_reach_readers_with_their_layer():
    stream = vp8_stream(layer=1)
    reader = Recorder()
    stream.add_reader(reader)
    report = rtcp.SenderReport(SSRC, 5 << 32, 9000, 10, 1000)
    stream.on_sender_report(report, 0.0)
    assert reader.reports == [(report, 1)]
    stream.keyframes.close()


class SwitchingSink(Sink):
    """A transport whose route changes: each route has its own send function."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: list[list[bytes]] = [[]]

    def rtp_sender(self):
        route = self.routes[-1]
        return lambda head, payload: route.append(head + payload) or True

    def move(self) -> None:
        self.routes.append([])
        self.route_version += 1


async def test_a_downtrack_sends_on_the_route_of_the_moment():
    track = PublishedTrack("TR", "PA", "video", "0", CodecInfo("video/VP8", 90000, 96), "camera")
    stream = vp8_stream()
    track.set_layer(0, stream)
    transport = SwitchingSink()
    downtrack = DownTrack(track, transport)
    downtrack.bind(MediaSection("0", "video", CodecInfo("video/VP8", 90000, 97), {}, [0x2222]))
    track.add_downtrack(downtrack)
    downtrack.set_target(0)
    stream.on_rtp(vp8(1, key=True), 0.0)
    stream.on_rtp(vp8(2), 0.0)
    transport.move()  # e.g. DTLS restarted, the ICE route moved, the connection closed
    stream.on_rtp(vp8(3), 0.0)
    old, new = transport.routes
    assert [HEADER.unpack_from(p)[2] - HEADER.unpack_from(old[0])[2] for p in old + new] == [0, 1, 2]
    assert len(old) == 2 and len(new) == 1  # nothing more went the old way
    stream.keyframes.close()
