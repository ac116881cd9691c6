"""A subscriber's two ways of putting tracks on m-lines (sfu/track_lines.py,
sfu/slots.py), on a real subscriber PC without a client: which track each
m-line carries, and that an ended down-track leaves its track with its
counters kept, whichever way it ended."""

from __future__ import annotations

import time

from sfu.config import IceConfig, SfuConfig
from sfu.layer_selector import OFF
from sfu.media_section import CodecInfo
from sfu.published_track import PublishedTrack
from sfu.subscriber import Subscriber
from sfu.transport import PeerTransport

from .waiting import eventually

CONFIG = SfuConfig(ice=IceConfig(addresses=["127.0.0.1"], udp_port=0))
VP8 = CodecInfo("video/VP8", 90000, 96)


def camera(participant_id: str) -> PublishedTrack:
    return PublishedTrack(f"TR_{participant_id}", participant_id, "video", "0", VP8, "camera")


def subscriber(**slots) -> Subscriber:
    return Subscriber("PA_viewer", CONFIG, lambda sdp, tracks: None, lambda state: None, slots=slots or None)


def carried(sub: Subscriber) -> list:
    return [s.track.id if s.track is not None else None for s in sub.slots]


async def test_one_mline_per_track_and_unsubscribe_ends_its_downtrack():
    sub = subscriber()
    a, b = camera("PA_a"), camera("PA_b")
    try:
        sub.subscribe(a)
        sub.subscribe(b)
        assert carried(sub) == ["TR_PA_a", "TR_PA_b"]
        assert sub.subscribed("TR_PA_a") and len(a.downtracks) == 1
        sub.unsubscribe("TR_PA_a")
        assert carried(sub) == [None, "TR_PA_b"]  # the m-line stays, inactive
        assert not sub.subscribed("TR_PA_a") and a.downtracks == []
        assert ("packets_out", "video") in sub.gone
    finally:
        await sub.close()
    assert b.downtracks == [] and sub.downtracks() == []
    assert not sub.subscribed("TR_PA_b")


async def test_fixed_slots_follow_last_n_and_a_reassigned_slot_ends_the_old_downtrack():
    sub = subscriber(video=1)
    a, b = camera("PA_a"), camera("PA_b")
    try:
        assert carried(sub) == [None]  # negotiated once, before any track
        sub.subscribe(a)
        sub.subscribe(b)
        sub.set_video_allowed(["PA_a", "PA_b"])
        assert carried(sub) == ["TR_PA_a"]
        first = a.downtracks[0]
        sub.set_video_allowed(["PA_b", "PA_a"])
        assert carried(sub) == ["TR_PA_b"]
        assert a.downtracks == [] and len(b.downtracks) == 1
        assert b.downtracks[0].munger is first.munger  # same SSRC, numbering carried on
        assert sub.subscribed("TR_PA_a")  # subscribed, without a slot
        assert ("packets_out", "video") in sub.gone
    finally:
        await sub.close()
    assert b.downtracks == [] and sub.downtracks() == []
    assert not sub.subscribed("TR_PA_a")


async def test_short_of_bandwidth_the_first_of_last_n_keeps_its_video():
    """Two cameras, room for one: the one last-N ranks first (the speaker,
    while the server sheds load) keeps its video, whichever slot it is in."""
    offers: list[str] = []
    sub = Subscriber("PA_viewer", CONFIG, lambda sdp, tracks: offers.append(sdp), lambda state: None,
                     slots={"video": 2})
    client = PeerTransport(IceConfig(addresses=["127.0.0.1"], udp_port=0), lambda p: None, lambda p: None)
    speaker, other = camera("PA_speaker"), camera("PA_other")
    try:
        await eventually(lambda: offers)
        await sub.accept_answer(await client.answer(offers[-1]))
        sub.subscribe(other)
        sub.subscribe(speaker)
        sub.set_video_allowed(["PA_other"])
        sub.set_video_allowed(["PA_speaker", "PA_other"])  # the speaker comes second, in slot 1
        assert carried(sub) == ["TR_PA_other", "TR_PA_speaker"]
        [on_speaker], [on_other] = speaker.downtracks, other.downtracks
        assert on_speaker.target == on_other.target == 0
        sub.downlink.on_receiver_report([(60, 150_000)])  # 23 % lost: about 130 kbps left
        sub.allocate(time.monotonic())
        assert (on_speaker.target, on_other.target) == (0, OFF)
    finally:
        await sub.close()
        await client.close()
