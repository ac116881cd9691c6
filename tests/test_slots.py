"""Slot subscriptions: a fixed set of m-lines, refilled by last-N and speakers."""

from __future__ import annotations

import asyncio
import time

import pytest

from signaling.client import ClientError
from sfu import lastn
from sfu.slots import assign

from .conftest import client_factory
from .frames import count_frames
from .media import PatternVideoTrack, ToneAudioTrack
from .raw_subscriber import RawSubscriber
from .waiting import eventually

P = pytest.param


@pytest.mark.parametrize(
    "current, wanted, keep, expected",
    [
        P([None, None], ["a", "b", "c"], [], ["a", "b"], id="fill-in-order"),
        P(["b", "a"], ["a", "b"], [], ["b", "a"], id="chosen-ones-stay-put"),
        P(["a", "b"], ["c", "b"], [], ["c", "b"], id="newcomer-takes-the-freed-slot"),
        P(["a", "b"], ["b"], [], [None, "b"], id="unwanted-dropped"),
        P(["a", None], ["c"], ["a"], ["a", "c"], id="kept-stays-while-a-slot-is-free"),
        P(["a", "b"], ["c"], ["a", "b"], ["c", "b"], id="kept-evicted-only-when-needed"),
        P(["a"], ["b", "c"], ["a"], ["b"], id="wanted-beyond-capacity-ignored"),
        P([], ["a"], [], [], id="no-slots"),
    ],
)
def test_assign(current, wanted, keep, expected):
    assert assign(current, wanted, keep) == expected


def test_rank_is_choose_in_order():
    assert lastn.rank(["a", "b", "c", "d"], ["d", "c"], ["b"], 3, "z") == ["b", "d", "c"]


@pytest.mark.parametrize("slots", [{"video": 50}, {"audio": 11}, {"video": -1}, {"video": 0, "audio": 0},
                                   {"video": 1, "screens": 2}])
async def test_bad_slot_counts_are_refused(clients, slots):
    client = await clients()
    with pytest.raises(ClientError) as error:
        await client.join("slots-bad", "x", slots=slots)
    assert error.value.code == "bad_message"


def video_of(client) -> dict[str, str]:
    """participant id -> mid of the video slots that carry someone."""
    return {s["participant_id"]: s["mid"] for s in client.slots if s["kind"] == "video" and s.get("participant_id")}


def audio_of(client) -> list:
    return [s.get("participant_id") for s in client.slots if s["kind"] == "audio"]


@pytest.mark.slow
async def test_slot_subscriber_follows_last_n_speakers_and_pins(make_server):
    server = await make_server()
    # aiortc's REMB as a subscriber stays near what it receives, and dips on a
    # loaded machine (253 kbps once, with two 100 kbps cameras): keep every
    # camera cheap, so that bandwidth allocation never pauses a slot here
    server.rooms.config.max_video_bitrate = 50_000
    async with client_factory(server) as connect:
        publishers, tones = [], []
        for index in range(5):
            client = await connect()
            await client.join("slots", f"p{index}")
            tone = ToneAudioTrack(amplitude=0.3 if index == 0 else 0.0)
            await client.publish([tone, PatternVideoTrack(160, 120)])
            publishers.append(client)
            tones.append(tone)
        ids = [p.participant_id for p in publishers]
        viewer = await connect()
        await viewer.join("slots", "viewer", slots={"video": 2, "audio": 1})
        raw = RawSubscriber(server.url)
        everyone = await connect()
        try:
            await raw.join("slots", slots={"video": 2, "audio": 1})
            await everyone.join("slots", "everyone")
            room = server.rooms.rooms["slots"]

            # the answer carries exactly the slots, however many tracks the room has
            await eventually(lambda: viewer.subscriber.localDescription is not None, timeout=10)
            sdp = viewer.subscriber.localDescription.sdp
            kinds = [line.split()[0][2:] for line in sdp.splitlines() if line.startswith("m=")]
            assert sorted(k for k in kinds if k != "application") == ["audio", "video", "video"], kinds

            # audio slot: the one speaker; video slots: the first two of its last-N ranking
            await eventually(lambda: audio_of(viewer) == [ids[0]], timeout=10,
                             message=f"audio slot never carried the speaker: {viewer.slots}")
            participant = room.participants[viewer.participant_id]
            ranked = lastn.rank(ids, room.speakers.speech_order.order, [], room.config.last_n, viewer.participant_id)
            await eventually(lambda: set(video_of(viewer)) == set(ranked[:2]), timeout=5,
                             message=f"video slots {viewer.slots} vs last-N {ranked}")
            assert ranked[0] == ids[0]
            await assert_video_flows(viewer, ranked[:2], server)
            assert participant.subscriber.offers_sent == 1

            # the dominant speaker changes: the audio slot follows within ~2 s,
            # and its packets keep one SSRC with no sequence gap
            tones[0].amplitude, tones[3].amplitude = 0.0, 0.3
            await eventually(lambda: audio_of(viewer) == [ids[3]], timeout=4,
                             message=f"audio slot did not follow the speaker: {viewer.slots}")
            await eventually(lambda: ids[3] in video_of(viewer), timeout=3,
                             message="a new speaker's camera did not get a video slot")
            await assert_video_flows(viewer, [ids[3]], server)
            await asyncio.sleep(1.0)
            audio_ssrcs = [ssrc for ssrc in raw.seqs if ssrc in raw_audio_ssrcs(raw)]
            assert len(audio_ssrcs) == 1, raw.seqs.keys()
            seqs = raw.seqs[audio_ssrcs[0]]
            gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if (b - a) & 0xFFFF != 1]
            assert len(seqs) > 100 and not gaps, gaps[:5]
            assert raw_slots(raw, "audio") == [ids[3]]

            # a pin takes a video slot
            await viewer.request({"type": "set_pins", "participant_ids": [ids[4]]})
            await eventually(lambda: ids[4] in video_of(viewer), timeout=3,
                             message=f"the pinned camera got no slot: {viewer.slots}")
            await assert_video_flows(viewer, [ids[4]], server)
            assert participant.subscriber.offers_sent == 1  # never renegotiated

            # update_track_settings by track id: a paused camera gives up its slot
            pinned_video = next(t for t in room.participants[ids[4]].tracks.values() if t.kind == "video")
            await viewer.request({"type": "update_track_settings", "track_id": pinned_video.id, "paused": True})
            await eventually(lambda: ids[4] not in video_of(viewer) and len(video_of(viewer)) == 2, timeout=3,
                             message=f"a paused camera kept its slot: {viewer.slots}")

            # a subscriber without slots still gets every track
            tracks = await everyone.wait_tracks(10, timeout=15)
            videos = [t for t in tracks if t.kind == "video"]
            counts = [len(f) for f in await asyncio.gather(*(count_frames(t.track, 2.0) for t in videos))]
            assert all(c > 3 for c in counts), counts
        finally:
            await raw.close()


def slot_states(server, viewer) -> list:
    """For failure messages: what each slot's down-track does."""
    room = next(iter(server.rooms.rooms.values()))
    subscriber = room.participants[viewer.participant_id].subscriber
    return [(s.kind, s.track and s.track.participant_id, s.downtrack and (
        s.downtrack.current, s.downtrack.target, s.downtrack.packets_sent)) for s in subscriber.slots] + [
        ("remb", subscriber.downlink.remb)]


async def assert_video_flows(viewer, participant_ids, server=None, timeout: float = 15) -> None:
    """Each one's camera reaches ``viewer``'s slot within ``timeout``: on a
    loaded machine the viewer's own reports (loss, REMB) can pause a slot
    for lack of bandwidth, and the allocator probes it back every 3 s."""
    for participant_id in participant_ids:
        track = await eventually(lambda: viewer.slot_of(participant_id, "video"), timeout=5,
                                 message=f"no slot track for {participant_id}")
        deadline = time.monotonic() + timeout
        while True:
            await count_frames(track, 2.0)  # the source switch waits for a key frame
            frames = len(await count_frames(track, 1.5))
            if frames > 5:
                break
            assert time.monotonic() < deadline, (participant_id, frames, server and slot_states(server, viewer))


def raw_audio_ssrcs(raw: RawSubscriber) -> set[int]:
    return {s.ssrcs[0] for s in raw.transport.received_sections() if s.kind == "audio"}


def raw_slots(raw: RawSubscriber, kind: str) -> list:
    events = [e for e in raw.events if e["type"] == "slots_changed"]
    return [s.get("participant_id") for s in events[-1]["slots"] if s["kind"] == kind]
