"""Grants hold for what a publish offer builds, however its SDP is written.

The grant check and the peer connection must read an offer the same way:
an offer that says a thing twice (two directions, two mids) or leaves a
mid out is refused with ``bad_sdp``; a mid aiortc reads differently from a
text reader is checked as aiortc reads it. Each case is an offer a real
aiortc peer made, edited by hand, sent over the WebSocket like any client.
"""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcconfiguration import RTCConfiguration

from signaling.auth import VideoGrant
from signaling.client import ClientError

from sfu.config import IceConfig
from sfu.transport import restrict_ice

from .conftest import KEYS, LOOPBACK, client_factory
from .media import PatternVideoTrack, ToneAudioTrack
from .test_auth import ROOM, token
from .waiting import eventually

CAMERA_ONLY = VideoGrant(room=ROOM, roomJoin=True, canPublishSources=["camera", "microphone"])
NO_PUBLISH = VideoGrant(room=ROOM, roomJoin=True, canPublish=False)
HIDDEN = VideoGrant(room=ROOM, roomJoin=True, hidden=True)


async def video_offer() -> tuple[RTCPeerConnection, str]:
    """A real aiortc offer sending one video track (mid "0")."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
    restrict_ice(pc, IceConfig(addresses=LOOPBACK))
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def edit(sdp: str, old: str, new: str) -> str:
    assert old in sdp, f"{old!r} not in the offer"
    return sdp.replace(old, new, 1)


@pytest.fixture
async def room(make_server):
    """A watcher in the room; yields (server, make connected client, watcher)."""
    server = await make_server(keys=KEYS)
    async with client_factory(server) as make:
        watcher = await make()
        await watcher.join(ROOM, token=token("watcher"))
        yield server, make, watcher


async def refused(room, grant: VideoGrant, sdp: str, tracks: list[dict], code: str) -> None:
    """``sdp`` published under ``grant`` is refused with ``code``; nothing
    reaches the room, and the session carries on."""
    server, make, watcher = room
    mallory = await make()
    await mallory.join(ROOM, token=token("mallory", grant=grant))
    with pytest.raises(ClientError) as caught:
        await mallory.request({"type": "publish", "sdp": sdp, "tracks": tracks})
    assert caught.value.code == code, caught.value
    assert server.rooms.rooms[ROOM].tracks() == []
    await watcher.request({"type": "ping"})  # the watcher has read everything sent before
    assert not [e for e in watcher.events if e["type"] == "track_published"]
    assert (await mallory.request({"type": "ping"}))["type"] == "pong"


@pytest.mark.parametrize("grant", [NO_PUBLISH, HIDDEN], ids=["canPublish-false", "hidden"])
async def test_recvonly_then_sendonly_does_not_publish(room, grant):
    """aiortc keeps the last direction: the check must not stop at the first."""
    pc, sdp = await video_offer()
    sdp = edit(sdp, "a=sendonly", "a=recvonly\r\na=sendonly")
    try:
        await refused(room, grant, sdp, [{"mid": "0", "source": "camera"}], "bad_sdp")
    finally:
        await pc.close()


async def test_direction_with_a_value_counts_as_a_direction(room):
    """``a=sendonly:x`` is a direction to aiortc."""
    pc, sdp = await video_offer()
    sdp = edit(sdp, "a=sendonly", "a=recvonly\r\na=sendonly:x")
    try:
        await refused(room, NO_PUBLISH, sdp, [{"mid": "0", "source": "camera"}], "bad_sdp")
    finally:
        await pc.close()


async def test_second_mid_cannot_smuggle_a_screen_share(room):
    """The check read mid 0 (declared camera), aiortc mid 1 (screen_share)."""
    pc, sdp = await video_offer()
    sdp = edit(sdp, "a=mid:0", "a=mid:0\r\na=mid:1")
    tracks = [{"mid": "0", "source": "camera"}, {"mid": "1", "source": "screen_share"}]
    try:
        await refused(room, CAMERA_ONLY, sdp, tracks, "bad_sdp")
    finally:
        await pc.close()


async def test_section_without_mid_is_refused(room):
    pc, sdp = await video_offer()
    sdp = edit(sdp, "a=mid:0\r\n", "")
    try:
        await refused(room, NO_PUBLISH, sdp, [], "bad_sdp")
    finally:
        await pc.close()


async def test_mid_is_checked_as_aiortc_reads_it(room):
    """``a=mid:0 `` (a trailing space) is mid "0 " to aiortc: its declared
    source is the one checked."""
    pc, sdp = await video_offer()
    sdp = edit(sdp, "a=mid:0\r\n", "a=mid:0 \r\n")
    tracks = [{"mid": "0", "source": "camera"}, {"mid": "0 ", "source": "screen_share"}]
    try:
        await refused(room, CAMERA_ONLY, sdp, tracks, "permission_denied")
    finally:
        await pc.close()


async def test_two_sections_with_one_mid_are_refused(room):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
    pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
    restrict_ice(pc, IceConfig(addresses=LOOPBACK))
    await pc.setLocalDescription(await pc.createOffer())
    sdp = edit(pc.localDescription.sdp, "a=mid:1", "a=mid:0")
    try:
        await refused(room, CAMERA_ONLY, sdp, [{"mid": "0", "source": "microphone"}], "bad_sdp")
    finally:
        await pc.close()


async def test_an_honest_offer_still_publishes(room):
    server, make, watcher = room
    alice = await make()
    await alice.join(ROOM, token=token("alice", grant=CAMERA_ONLY))
    infos = await alice.publish([ToneAudioTrack(), PatternVideoTrack()], sources=["microphone", "camera"])
    assert [i["source"] for i in infos] == ["microphone", "camera"]
    await eventually(lambda: len([e for e in watcher.events if e["type"] == "track_published"]) == 2)
