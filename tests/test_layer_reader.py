"""LayerReader (sfu/layer_reader.py): a recorder reads a simulcast track like a
subscriber: the wanted layer when it flows, else the best flowing one, moving
at keyframes; dynacast sees what it wants."""

from __future__ import annotations

import time

from sfu.codecs import handler
from sfu.layer_reader import LayerReader
from sfu.layer_selector import OFF
from sfu.media_section import CodecInfo
from sfu.published_track import PublishedTrack
from sfu.stream import ReceivedStream

from .packets import rtp_packet, vp8_descriptor, vp8_frame_header

SSRCS = (100, 200, 300)


def simulcast_track() -> PublishedTrack:
    track = PublishedTrack("TR_cam", "PA_x", "video", "0", CodecInfo("video/VP8", 90000, 96), "camera",
                           rids=["q", "h", "f"])
    for layer, ssrc in enumerate(SSRCS):
        track.set_layer(layer, ReceivedStream("video", ssrc, 90000, handler("VP8"), lambda b: None, 1, 64, 0.5,
                                              layer=layer))
    return track


def send(track: PublishedTrack, layer: int, seq: int, keyframe: bool) -> None:
    payload = vp8_descriptor() + vp8_frame_header(keyframe) + b"\x00" * 20
    packet = rtp_packet(seq=seq, ts=seq * 3000, ssrc=SSRCS[layer], marker=True, payload=payload)
    track.layers[layer].on_rtp(packet, time.monotonic())


async def test_reads_the_best_flowing_layer_then_moves_up_at_a_keyframe():
    track = simulcast_track()
    items: list[tuple] = []
    reader = LayerReader(track, items.append)
    for layer in (0, 1):  # the top layer is paused
        send(track, layer, 1, keyframe=False)
    reader.want(2)
    assert (reader.desired, reader.target, reader.current) == (2, 1, OFF)
    track.dynacast(time.monotonic())
    assert max(d.desired for d in track.downtracks) == 2  # dynacast is asked for the top layer

    send(track, 1, 2, keyframe=False)  # not a keyframe: nothing yet
    assert items == []
    send(track, 1, 3, keyframe=True)
    assert [i[0] for i in items] == ["reset", "rtp"] and reader.current == 1
    send(track, 0, 4, keyframe=True)  # other layers are not read
    assert len(items) == 2

    send(track, 2, 10, keyframe=False)  # the top layer flows again
    reader.want(2)
    assert reader.target == 2
    send(track, 1, 5, keyframe=False)  # still layer 1 until the top's keyframe
    send(track, 2, 11, keyframe=True)
    assert [i[0] for i in items] == ["reset", "rtp", "rtp", "reset", "rtp"] and reader.current == 2
    assert items[-1][2] == 11  # the top layer's numbering from here

    reader.detach()
    assert reader not in track.downtracks and all(not s.has_reader(reader) for s in track.layers)
