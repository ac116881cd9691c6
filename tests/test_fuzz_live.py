"""Fuzzing the handlers a live call runs on what arrives over its sockets.

A real call (an in-process server, aiortc clients over loopback) gets
fuzzed RTP and RTCP fed to the very callbacks the socket path calls once
SRTP is removed (Publisher/Subscriber ``_on_rtp``/``_on_rtcp``), from the
event loop, as the socket would. None of them may raise (their guard counts
``errors`` and logs a traceback), and the call keeps flowing afterwards.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from sfu import rtcp, rtp
from signaling.client import ClientError

from .frames import count_frames
from .fuzz import counted
from .test_forwarding import publish_camera_and_mic
from .test_fuzz_packets import BLOCKS, GARBAGE, U16, U32, rtcp_like, rtp_like
from .test_fuzz_text import CHROME_OFFER
from .waiting import eventually


@st.composite
def feedback_for(draw, ssrcs: list[int]) -> bytes:
    """A compound of well-formed feedback naming the call's real SSRCs
    (so it reaches real down-tracks), around garbage."""
    ssrc = st.sampled_from(ssrcs) | U32
    pieces = draw(st.lists(st.one_of(
        st.builds(rtcp.build_nack, U32, ssrc, st.lists(U16, min_size=1, max_size=40)),
        st.builds(rtcp.build_pli, U32, ssrc),
        st.builds(rtcp.build_fir, U32, ssrc, st.integers(0, 255)),
        st.builds(rtcp.build_remb, U32, st.integers(0, 2**40), st.lists(ssrc, max_size=4)),
        st.builds(lambda s, b: rtcp.build_rr(s, b), U32,
                  st.lists(BLOCKS.map(lambda b: b) | st.builds(_block_for, ssrc, U32), max_size=3)),
        rtcp_like(),
    ), min_size=1, max_size=4))
    return b"".join(pieces)


def _block_for(ssrc: int, highest: int) -> rtcp.ReportBlock:
    return rtcp.ReportBlock(ssrc, 255, 100, highest, 1000, 0, 0)


def learning_packet(mid_id: int, rid_id: int, mid: bytes, rid: bytes, ssrc: int, pt: int) -> bytes:
    """RTP on an SSRC the SDP did not announce, naming an m-line by MID/RID."""
    elements = [(i, v) for i, v in ((mid_id, mid), (rid_id, rid)) if 0 < i < 15 and v]
    block = rtp.one_byte_extensions(elements)
    header = struct.pack("!BBHII", 0x90, pt & 0x7F, 1, 0, ssrc)
    return header + block + b"\x00" * 20


async def test_fuzzed_rtp_and_rtcp_in_a_live_call_raise_nothing_and_the_call_flows(server, clients):
    publisher_client = await clients()
    await publisher_client.join("fuzz", "alice")
    await publish_camera_and_mic(publisher_client)
    subscriber_client = await clients()
    await subscriber_client.join("fuzz", "bob")
    tracks = {t.kind: t for t in await subscriber_client.wait_tracks(2)}

    async def video_flows() -> bool:  # 5 frames in a second, within 10 s (a loaded machine starts slowly)
        for _ in range(10):
            if len(await count_frames(tracks["video"].track, 1.0)) >= 5:
                return True
        return False

    assert await video_flows(), "no video before the fuzzing"

    room = server.rooms.rooms["fuzz"]
    publisher = room.participants[publisher_client.participant_id].publisher
    subscriber = room.participants[subscriber_client.participant_id].subscriber
    await eventually(lambda: all(d.stream for d in subscriber.downtracks()))
    down_ssrcs = [d.ssrc for d in subscriber.downtracks()]
    up_ssrcs = [s.ssrc for s in publisher.streams]
    mids = [m.encode() for m in publisher.tracks_by_mid]

    @settings(max_examples=200)
    @given(st.one_of(feedback_for(down_ssrcs), GARBAGE))
    def subscriber_rtcp(data):
        counted("live rtcp")
        subscriber._on_rtcp(data)

    @settings(max_examples=150)
    @given(st.one_of(rtcp_like(), GARBAGE, st.builds(rtcp.build_sr, st.sampled_from(up_ssrcs), U32, U32, U32, U32)))
    def publisher_rtcp(data):
        counted("live rtcp")
        publisher._on_rtcp(data)

    @settings(max_examples=150)
    @given(st.one_of(
        rtp_like(), GARBAGE,
        st.builds(learning_packet, st.integers(0, 15), st.integers(0, 15), st.sampled_from(mids) | st.binary(max_size=3),
                  st.binary(max_size=3), U32, st.integers(0, 127)),
    ))
    def publisher_rtp(data):
        counted("live rtp")
        if rtp.payload_offset(data) >= 0 and int.from_bytes(data[8:12], "big") in up_ssrcs:
            data = data[:8] + b"\x00\x00\x00\x07" + data[12:]  # the real streams carry real media
        publisher._on_rtp(data)

    subscriber_rtcp()
    publisher_rtcp()
    publisher_rtp()
    assert (subscriber.errors, publisher.errors) == (0, 0), "a handler raised on fuzzed input"

    # the call carries on: the subscriber decodes video again (a fuzzed REMB
    # may hold its video back for up to two seconds)
    assert await video_flows(), "video stopped after the fuzzing"
    assert publisher_client.publisher.connectionState == "connected"
    assert subscriber_client.subscriber.connectionState == "connected"


@pytest.mark.parametrize(
    "offer",
    [
        pytest.param(CHROME_OFFER.replace("a=sendonly\r\na=msid:stream video", "a=msid:stream video"),
                     id="m-line-without-direction"),
        pytest.param(CHROME_OFFER.replace("a=rtpmap:96 VP8/90000\r\n", ""), id="payload-type-without-codec"),
        pytest.param(CHROME_OFFER.replace("a=mid:0", "a=mid:0\r\na=mid:1"), id="two-m-lines-one-mid"),
        pytest.param(CHROME_OFFER.replace("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n", ""), id="bundle-names-a-lost-mid"),
    ],
)
async def test_offers_the_fuzzer_found_get_bad_sdp_and_the_room_is_freed(server, clients, offer):
    """Offers aiortc refuses late (or half-applies) are ``bad_sdp``, not an
    internal error; the session carries on and leaving frees everything."""
    client = await clients()
    await client.join("badoffer", "mallory")
    with pytest.raises(ClientError) as error:
        await client.request({"type": "publish", "sdp": offer})
    assert error.value.code == "bad_sdp"
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    participant = server.rooms.rooms["badoffer"].participants[client.participant_id]
    await client.request({"type": "leave"})
    await eventually(lambda: "badoffer" not in server.rooms.rooms, message="the room was not freed")
    assert participant.publisher.transport.pc.connectionState == "closed"
