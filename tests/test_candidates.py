"""Remote ICE candidates: each one aims the server's STUN checks somewhere,
so a client may name only a few, and only addresses it could really have."""

from __future__ import annotations

import pytest

from sfu.candidates import CandidatePolicy, CandidateRefused
from sfu.config import IceConfig
from sfu.media_section import CodecInfo, SdpError
from sfu.transport import PeerTransport
from signaling.client import ClientError

from .media import ToneAudioTrack

LOOPBACK = IceConfig(addresses=["127.0.0.1"], udp_port=0)


@pytest.mark.parametrize(
    "host, allow_loopback, admitted",
    [
        ("192.168.1.20", False, True),
        ("10.0.0.7", False, True),
        ("203.0.113.9", False, True),
        ("2001:db8::1", False, True),
        ("127.0.0.1", True, True),
        ("127.0.0.1", False, "loopback"),
        ("::1", False, "loopback"),
        ("4c3e8f2a-0e65-4d7e-9d1b-4b1f2a3c5d6e.local", False, False),
        ("example.com", False, "not an IP"),
        ("0.0.0.0", False, "not a unicast"),
        ("224.0.0.251", False, "not a unicast"),
        ("255.255.255.255", False, "not a unicast"),
    ],
)
def test_policy_judges_each_address(host, allow_loopback, admitted):
    policy = CandidatePolicy(20, allow_loopback)
    if isinstance(admitted, str):
        with pytest.raises(CandidateRefused, match=admitted):
            policy.admit("udp", host, "5000")
    else:
        assert policy.admit("udp", host, "5000") is admitted


def test_policy_counts_distinct_addresses_up_to_the_limit():
    policy = CandidatePolicy(3, allow_loopback=True)
    for port in ("1", "2", "3"):
        assert policy.admit("udp", "127.0.0.1", port)
    assert policy.admit("UDP", "127.0.0.1", "2")  # the same one again (a renegotiation): free
    with pytest.raises(CandidateRefused, match="more than 3"):
        policy.admit("udp", "127.0.0.1", "4")


def candidate_line(port: int, host: str = "127.0.0.1") -> str:
    return f"candidate:{port} 1 udp 2122260223 {host} {port} typ host"


async def test_trickle_beyond_the_limit_is_refused_and_the_session_carries_on(server):
    async with server.client() as client:
        await client.join("candidates", "alice")
        await client.publish([ToneAudioTrack()])
        results = []
        for port in range(40000, 40030):  # on 127.0.0.2: never one of the client's own (ephemeral ports)
            message = {"type": "trickle", "target": "publisher", "candidate": candidate_line(port, "127.0.0.2"),
                       "sdp_mid": "0", "sdp_mline_index": 0}
            try:
                await client.request(message)
                results.append("ok")
            except ClientError as exc:
                results.append(exc.code)
        accepted = results.count("ok")
        assert 10 <= accepted < 20, results  # the client's own candidate counts too
        assert results[accepted:] == ["bad_candidate"] * (30 - accepted), results
        mdns = {"type": "trickle", "target": "publisher", "candidate": candidate_line(40100, "abc.local"),
                "sdp_mid": "0"}
        assert (await client.request(mdns))["type"] == "ok"  # ignored: it could not be resolved here
        with pytest.raises(ClientError) as caught:
            await client.request({**mdns, "candidate": candidate_line(40101, "example.com")})
        assert caught.value.code == "bad_candidate"
        assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_an_offer_with_too_many_candidates_is_refused():
    sender = PeerTransport(LOOPBACK, lambda p: None, lambda p: None)
    receiver = PeerTransport(LOOPBACK, lambda p: None, lambda p: None)
    try:
        sender.add_sendonly("audio", CodecInfo("audio/opus", 48000, 111, channels=2), "s", "t")
        offer = await sender.create_offer()
        extra = "".join(f"a={candidate_line(port)}\r\n" for port in range(41000, 41030))
        offer = offer.replace("a=end-of-candidates\r\n", extra + "a=end-of-candidates\r\n", 1)
        assert offer.count("a=candidate:") > 30
        with pytest.raises(SdpError, match="more than 20"):
            await receiver.answer(offer)
    finally:
        await sender.close()
        await receiver.close()
