"""TURN through a real coturn: pysfu mints time-limited credentials (TURN REST
API shared secret), hands them out in join_response, and media flows through
the relay; coturn refuses the credentials once they expire."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ssl
import time

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from signaling.client import Client
from signaling.config import IceServers

from .browser import chromium
from .conftest import LOOPBACK, client_factory, start_server_process, stop_server_process
from .media import PatternVideoTrack, ToneAudioTrack
from .turn import SECRET, coturn
from .waiting import eventually_async


@pytest.fixture
def turn(tmp_path):
    with coturn(tmp_path / "coturn", tls=True) as server:
        yield server


def relayed_by(turn, transport: str = "udp", ttl: int = 86400, secret: str = SECRET) -> IceServers:
    return IceServers(turn_urls=[turn.url(transport)], turn_secret=secret, turn_ttl=ttl)


async def allocate(turn, username: str, credential: str, transport: str = "udp") -> tuple[str, int]:
    """Create a TURN allocation (Allocate request, long-term credentials) over
    udp, tcp or tls and give it back; returns the relayed address."""
    if transport == "tls":  # turns:, checking coturn's certificate
        address, tls, transport = turn.tls_address, ssl.create_default_context(cafile=str(turn.cert)), "tcp"
    else:
        address, tls = turn.address, None
    relay, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, address, username, credential, ssl=tls, transport=transport
    )
    try:
        return relay.get_extra_info("sockname")
    finally:
        relay.close()
        await asyncio.sleep(0.05)  # lets the Refresh(lifetime 0) go out


async def refused_code(turn, username: str, credential: str) -> int:
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(turn, username, credential)
    return refused.value.response.attributes["ERROR-CODE"][0]


async def joined_ice_servers(server, room: str) -> list[dict]:
    async with client_factory(server) as make:
        client = await make()
        return (await client.join(room, "ana"))["ice_servers"]


# --- join_response.ice_servers --------------------------------------------------


async def test_join_response_carries_minted_turn_credentials(make_server):
    servers = IceServers(
        turn_urls=["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"],
        turn_secret="shared-" + "s" * 24, turn_ttl=600, stun_urls=["stun:stun.example.com:3478"],
        external=[{"urls": ["turn:other.example.com:3478?transport=tcp"], "username": "u", "credential": "p"}],
    )
    server = await make_server(ice_servers=servers)
    async with client_factory(server) as make:
        client = await make()
        joined = await client.join("ice", "ana")
    stun_entry, turn_entry, external = joined["ice_servers"]
    assert stun_entry == {"urls": ["stun:stun.example.com:3478"]}
    assert external == {"urls": ["turn:other.example.com:3478?transport=tcp"], "username": "u", "credential": "p"}
    assert turn_entry["urls"] == servers.turn_urls
    expiry, identity = turn_entry["username"].split(":", 1)
    assert identity == joined["participant"]["identity"] == joined["participant"]["id"]
    assert abs(int(expiry) - (time.time() + 600)) <= 2
    mac = hmac.new(servers.turn_secret.encode(), turn_entry["username"].encode(), hashlib.sha1).digest()
    assert turn_entry["credential"] == base64.b64encode(mac).decode()
    # the Python client configures its peer connections with them
    assert [s.urls for s in client.ice_servers] == [s["urls"] for s in joined["ice_servers"]]


async def test_no_ice_servers_without_configuration(server, clients):
    client = await clients()
    joined = await client.join("plain", "ana")
    assert joined["ice_servers"] == [] and client.ice_servers == []


# --- credentials at a real coturn -------------------------------------------------


@pytest.mark.slow
async def test_coturn_accepts_fresh_credentials_and_refuses_expired_ones(turn, make_server):
    server = await make_server(ice_servers=relayed_by(turn, ttl=6))
    [entry] = await joined_ice_servers(server, "expiry")
    username, credential = entry["username"], entry["credential"]

    host, _ = await allocate(turn, username, credential)
    assert host == "127.0.0.1", "coturn relays on its relay-ip"
    for transport in ("tcp", "tls"):
        host, _ = await allocate(turn, username, credential, transport)
        assert host == "127.0.0.1", f"TURN over {transport} works with the same credentials"
    assert await refused_code(turn, username, base64.b64encode(b"\0" * 20).decode()) == 401

    expiry = int(username.split(":", 1)[0])
    await asyncio.sleep(max(0.0, expiry + 1.2 - time.time()))
    assert await refused_code(turn, username, credential) == 401, "expired credentials must be refused"

    [fresh] = await joined_ice_servers(server, "expiry-again")
    assert (await allocate(turn, fresh["username"], fresh["credential"]))[0] == "127.0.0.1"


async def test_credentials_of_another_secret_are_refused(turn, make_server):
    server = await make_server(ice_servers=relayed_by(turn, secret="not-the-coturn-secret-" + "q" * 10))
    [entry] = await joined_ice_servers(server, "wrong-secret")
    assert await refused_code(turn, entry["username"], entry["credential"]) == 401


# --- media through the relay (Python clients) ------------------------------------


async def test_python_clients_exchange_media_only_through_coturn(turn, make_server):
    server = await make_server(ice_servers=relayed_by(turn))

    ana, ben = (Client(server.url, ice_addresses=LOOPBACK, ice_transport_policy="relay") for _ in range(2))
    tracks = [ToneAudioTrack(), PatternVideoTrack(320, 240)]
    try:
        for client in (ana, ben):
            await client.connect()
            await client.join("relayed", "p")
        await ana.publish(tracks)
        remote = await ben.wait_tracks(2, timeout=20)
        video = next(t for t in remote if t.kind == "video")
        frame = await asyncio.wait_for(video.track.recv(), 20)
        assert frame.width > 0
        for pc in (ana.publisher, ben.subscriber):
            gatherer = pc.getTransceivers()[0].sender.transport.transport.iceGatherer
            kinds = {c.type for c in gatherer.getLocalCandidates()}
            assert kinds == {"relay"}, f"only relay candidates expected, got {kinds}"
    finally:
        for client in (ana, ben):
            await client.close()
        for track in tracks:
            track.stop()


# --- Chromium through coturn ----------------------------------------------------------

RELAY_STATS_JS = """
async () => {
  const client = window.pysfuDemo.client;
  const out = {};
  for (const [name, pc] of [["publisher", client.publisherPc], ["subscriber", client.subscriberPc]]) {
    const stats = await pc.getStats();
    let pair = null;
    let framesDecoded = 0;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      if (s.type === "inbound-rtp" && s.kind === "video") framesDecoded += s.framesDecoded || 0;
    });
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    out[name] = {
      state: pc.connectionState, framesDecoded,
      local: local ? local.candidateType : null, relayProtocol: local ? local.relayProtocol : null,
      remote: remote ? `${remote.candidateType} ${remote.address}:${remote.port}` : null,
    };
  }
  return out;
}
"""


@pytest.mark.browser
# (TURN over plain TCP is the tls case without the TLS layer: the allocation
# test above covers it, saving a browser run)
@pytest.mark.parametrize("transport", ["udp", "tls"])
async def test_chromium_relay_only_sends_and_receives_through_coturn(turn, transport, tmp_path):
    server = start_server_process(["--dev", "--turn-url", turn.url(transport), "--turn-secret", SECRET])
    try:
        # turns: Chromium checks the TURN server's certificate, ours is self-signed
        flags = ["--ignore-certificate-errors"] if transport == "tls" else []
        async with chromium(tmp_path, flags) as browser:
            pages = []
            for name in ["ana", "ben"]:
                page = await browser.new_page()
                await page.goto(f"{server.http}/?room=relay-{transport}&name={name}&autojoin=1&relay=1")
                pages.append(page)
            for page in pages:
                await page.wait_for_selector("body[data-state=joined]", timeout=15000)
                config = await page.evaluate("window.pysfuDemo.client.rtcConfig")
                [servers] = config["iceServers"]  # from join_response, credentials minted for this page
                assert config["iceTransportPolicy"] == "relay" and servers["urls"] == [turn.url(transport)]
                assert servers["username"].split(":", 1)[0].isdigit() and servers["credential"]
            for page in pages:
                first = await eventually_async(
                    lambda page=page: page.evaluate(RELAY_STATS_JS),
                    lambda s: s["subscriber"]["framesDecoded"] > 0 and s["publisher"]["local"], timeout=30,
                )
                await asyncio.sleep(1)
                second = await page.evaluate(RELAY_STATS_JS)
                assert second["subscriber"]["framesDecoded"] > first["subscriber"]["framesDecoded"], second
                for side in ("publisher", "subscriber"):
                    pair = second[side]
                    assert pair["local"] == "relay", f"{side} PC not relayed: {pair}"
                    assert pair["relayProtocol"] == transport, pair
                    assert pair["remote"].startswith("host 127.0.0.1:"), pair
    finally:
        stop_server_process(server)
