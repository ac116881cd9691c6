"""What one participant publishes is bounded, and a subscriber's offer
never waits forever: a publish with too many tracks or m-lines is refused
(``too_many_tracks``) and the room carries on; an unanswered subscriber
offer times out and later tracks still arrive; the answer of a big room is
accepted even when it is over the configured SDP limit, since it follows
the size of the server's own offer."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcconfiguration import RTCConfiguration

from sfu import sdp_text
from sfu.config import IceConfig
from sfu.transport import restrict_ice
from signaling.client import ClientError

from .conftest import LOOPBACK, client_factory
from .media import ToneAudioTrack
from .raw_subscriber import RawSubscriber
from .waiting import eventually


async def audio_offer_with(count: int, sending: int) -> str:
    """A real aiortc offer of one audio m-line, repeated ``count`` times
    (mids 0..count-1); the first ``sending`` send, the others are stopped
    (inactive), as a browser's offer after many unpublishes."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
    restrict_ice(pc, IceConfig(addresses=LOOPBACK))
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    session, section = sdp_text.sections(sdp)[:2]
    session = [line for line in session if not line.startswith("a=group:BUNDLE")]
    session.append("a=group:BUNDLE " + " ".join(str(i) for i in range(count)))
    lines = list(session)
    for index in range(count):
        direction = "a=sendonly" if index < sending else "a=inactive"
        lines += [direction if line == "a=sendonly" else f"a=mid:{index}" if line == "a=mid:0" else line
                  for line in section]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("count, sending", [(50, 50), (40, 1)], ids=["50-tracks", "40-m-lines"])
async def test_too_many_tracks_are_refused_and_the_room_carries_on(make_server, count, sending):
    server = await make_server()
    async with client_factory(server) as connect:
        watcher, honest, mallory = await connect(), await connect(), await connect()
        await watcher.join("cap", "watcher")
        await honest.join("cap", "honest")
        await mallory.join("cap", "mallory")
        sdp = await audio_offer_with(count, sending)
        with pytest.raises(ClientError) as caught:
            await mallory.request({"type": "publish", "sdp": sdp, "tracks": []})
        assert caught.value.code == "too_many_tracks", caught.value
        assert server.rooms.rooms["cap"].tracks() == []
        # the room carries on: a later track reaches the watcher, media flows
        await honest.publish([ToneAudioTrack()])
        [track] = await watcher.wait_tracks(1, timeout=15)
        await asyncio.wait_for(track.track.recv(), 10)
        assert {e["track"]["participant_id"] for e in watcher.events if e["type"] == "track_published"} == {
            honest.participant_id}
        # and so does the refused participant, within the cap
        await mallory.publish([ToneAudioTrack()])


async def test_an_unanswered_offer_times_out_and_later_tracks_arrive(make_server):
    server = await make_server(sfu={"answer_timeout": 1.0})
    raw = RawSubscriber(server.url)
    raw.answering = False  # a client that never answers
    async with client_factory(server) as connect:
        try:
            await raw.join("stall")
            first = await connect()
            await first.join("stall", "first")
            await first.publish([ToneAudioTrack()])

            def offers() -> int:
                return len([e for e in raw.events if e["type"] == "subscriber_offer"])

            # unanswered, the offer times out and a fresh one is sent
            await eventually(lambda: offers() >= 2, timeout=15, message="no fresh offer after the timeout")
            raw.answering = True
            second = await connect()
            await second.join("stall", "second")
            await second.publish([ToneAudioTrack()])
            await eventually(lambda: len([s for s, seqs in raw.seqs.items() if len(seqs) > 20]) == 2, timeout=15,
                             message=f"the tracks published did not both arrive: {list(raw.seqs)} {[(e['type'], e.get('code')) for e in raw.events]}")
        finally:
            await raw.close()


@pytest.mark.slow
async def test_a_big_rooms_answer_is_accepted_over_the_sdp_limit(make_server):
    """A watcher's answer grows with the room: with small limits (so a few
    tracks are a big room) it is over both the SDP and the message limit,
    and still accepted, because the server's own offer was that big."""
    server = await make_server(limits={"max_sdp_bytes": 4096, "max_message_bytes": 6144})
    async with client_factory(server) as connect:
        watcher = await connect()
        await watcher.join("big", "watcher")
        for index in range(8):
            publisher = await connect()
            await publisher.join("big", f"p{index}")
            await publisher.publish([ToneAudioTrack()])
        tracks = await watcher.wait_tracks(8, timeout=20)
        assert len(watcher.subscriber.localDescription.sdp) > 6144
        for track in tracks:
            await asyncio.wait_for(track.track.recv(), 10)
