"""Last-N: whose camera video each subscriber receives."""

from __future__ import annotations

import asyncio
import time

import pytest

from sfu.lastn import SpeechOrder, choose

from .conftest import client_factory
from .frames import count_frames
from .media import PatternVideoTrack

P = pytest.param


@pytest.mark.parametrize(
    "publishers, speakers, pins, n, me, chosen",
    [
        P(["a", "b", "c"], [], [], 5, "z", {"a", "b", "c"}, id="room-smaller-than-n"),
        P(["a", "b", "c", "d"], [], [], 2, "z", {"a", "b"}, id="longest-present-fill"),
        P(["a", "b", "c", "d"], ["d", "c"], [], 2, "z", {"d", "c"}, id="recent-speakers-first"),
        P(["a", "b", "c", "d"], ["d", "c"], ["a"], 2, "z", {"a", "d"}, id="pins-before-speakers"),
        P(["a", "b", "c"], ["a"], [], 2, "a", {"b", "c"}, id="never-yourself"),
        P(["a", "b"], ["x"], ["y"], 2, "z", {"a", "b"}, id="gone-ids-ignored"),
        P(["a", "b", "c"], [], ["c", "b", "a"], 1, "z", {"c"}, id="more-pins-than-n"),
    ],
)
def test_choose(publishers, speakers, pins, n, me, chosen):
    assert choose(publishers, speakers, pins, n, me) == chosen


def test_speech_order_moves_recent_speakers_first():
    order = SpeechOrder()
    assert order.heard(["a"]) and order.heard(["b", "c"])
    assert order.order == ["b", "c", "a"]
    assert not order.heard(["b", "c"])
    order.forget("c")
    assert order.order == ["b", "a"]


async def test_last_n_pauses_others_and_pins_choose(make_server):
    server = await make_server()
    server.rooms.config.last_n = 1  # one camera per subscriber
    async with client_factory(server) as connect:
        publishers = []
        for name in ("ana", "ben"):
            client = await connect()
            await client.join("lastn", name)
            await client.publish([PatternVideoTrack(160, 120)])
            publishers.append(client)
        viewer = await connect()
        await viewer.join("lastn", "viewer")
        tracks = {t.participant_id: t.track for t in await viewer.wait_tracks(2)}
        ana, ben = (p.participant_id for p in publishers)

        async def flowing() -> dict:
            counts = [len(f) for f in await asyncio.gather(*(count_frames(tracks[p], 1.0) for p in (ana, ben)))]
            return dict(zip((ana, ben), counts))

        async def settles(shown: str, hidden: str) -> dict:
            # a switch takes a key frame and a second window to show on a busy machine
            deadline = time.monotonic() + 15
            while True:
                counts = await flowing()
                if counts[shown] > 5 and counts[hidden] == 0 or time.monotonic() > deadline:
                    return counts

        first = await settles(ana, ben)
        assert first[ana] > 5 and first[ben] == 0, first  # the longest present, not both
        await viewer.request({"type": "set_pins", "participant_ids": [ben]})
        pinned = await settles(ben, ana)
        assert pinned[ben] > 5 and pinned[ana] == 0, pinned
        participant = server.rooms.rooms["lastn"].participants[viewer.participant_id]
        assert len(participant.subscriber.slots) == 2  # paused, not renegotiated away
