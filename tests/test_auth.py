"""Access tokens: minting, verification, and grants enforced by the server."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest

from signaling.app import CONFIG
from signaling.auth import DEV_KEY, AuthError, VideoGrant, create_token, verify_token
from signaling.cli import main
from signaling.client import Client, ClientError

from .conftest import API_KEY, API_SECRET, KEYS, LOOPBACK, client_factory
from .media import PatternVideoTrack, ToneAudioTrack
from .waiting import eventually

ROOM = "secure"


def token(identity: str = "alice", key: str = API_KEY, secret: str = API_SECRET, **options) -> str:
    grant = options.pop("grant", None) or VideoGrant(room=ROOM, roomJoin=True)
    return create_token(key, secret, identity, grant, **options)


def raw_token(**claims) -> str:
    """A token signed with the right key whose claims are exactly these (None drops one)."""
    base = {"iss": API_KEY, "sub": "alice", "exp": int(time.time()) + 600, "video": {"room": ROOM, "roomJoin": True}}
    merged = {k: v for k, v in {**base, **claims}.items() if v is not None}
    return jwt.encode(merged, API_SECRET, algorithm="HS256")


# --- verification (no server) -------------------------------------------------

BAD_TOKENS = [
    ("expired", lambda: token(ttl=60, now=time.time() - 120), "token_expired"),
    ("not yet valid", lambda: token(not_before=time.time() + 60), "token_not_yet_valid"),
    ("wrong signature", lambda: token(secret="z" * 40), "token_bad_signature"),
    ("unknown key", lambda: token(key="nobody", secret="z" * 40), "token_unknown_key"),
    ("not a JWT", lambda: "not-a-token", "token_malformed"),
    ("roomJoin a string", lambda: raw_token(video={"room": ROOM, "roomJoin": "true"}), "token_malformed"),
    ("hidden a number", lambda: raw_token(video={"room": ROOM, "roomJoin": True, "hidden": 0}), "token_malformed"),
    ("room a number", lambda: raw_token(video={"room": 7, "roomJoin": True}), "token_malformed"),
    ("exp a string", lambda: raw_token(exp=str(int(time.time()) + 600)), "token_malformed"),
    ("nbf a string", lambda: raw_token(nbf="0"), "token_malformed"),
    ("no exp", lambda: raw_token(exp=None), "token_malformed"),
    ("empty sub", lambda: raw_token(sub=""), "token_malformed"),
    ("name a number", lambda: raw_token(name=5), "token_malformed"),
]


@pytest.mark.parametrize("make, code", [(m, c) for _, m, c in BAD_TOKENS], ids=[i for i, _, _ in BAD_TOKENS])
def test_bad_tokens_have_their_own_codes(make, code):
    with pytest.raises(AuthError) as caught:
        verify_token(make(), KEYS)
    assert caught.value.code == code


def test_nbf_allows_a_few_seconds_of_clock_skew():
    """A token minted on a machine whose clock runs 5 s ahead is good at once."""
    claims = verify_token(token(not_before=time.time() + 5), KEYS)
    assert claims.identity == "alice"
    verify_token(raw_token(exp=int(time.time()) - 5), KEYS)  # just expired, within the skew


def test_development_key_signs_only_join_grants():
    dev_keys = {DEV_KEY: "d" * 40}
    joiner = create_token(DEV_KEY, "d" * 40, "dev-1", VideoGrant(room=ROOM, roomJoin=True))
    assert verify_token(joiner, dev_keys).video.room_join
    for grant in (VideoGrant(roomAdmin=True), VideoGrant(roomCreate=True), VideoGrant(roomList=True),
                  VideoGrant(room=ROOM, roomJoin=True, roomAdmin=True)):
        with pytest.raises(AuthError) as caught:
            verify_token(create_token(DEV_KEY, "d" * 40, "dev-1", grant), dev_keys)
        assert caught.value.code == "permission_denied"


def test_token_round_trip_keeps_identity_and_grants():
    grant = VideoGrant(room="r", roomJoin=True, canPublish=False, canPublishSources=["camera"], hidden=True)
    claims = verify_token(token("bob", name="Bob", metadata='{"a": 1}', grant=grant), KEYS)
    assert (claims.identity, claims.name, claims.metadata, claims.api_key) == ("bob", "Bob", '{"a": 1}', API_KEY)
    assert claims.video == grant


def test_any_configured_key_may_sign():
    claims = verify_token(token(key="second-key", secret=KEYS["second-key"]), KEYS)
    assert claims.api_key == "second-key"


def test_cli_mints_a_token_the_server_accepts(capsys, monkeypatch):
    monkeypatch.setenv("PYSFU_API_SECRET", API_SECRET)
    main(["token", "create", "--api-key", API_KEY, "--room", ROOM, "--identity", "carol",
          "--name", "Carol", "--subscribe-only", "--sources", "microphone"])
    claims = verify_token(capsys.readouterr().out.strip(), KEYS)
    assert claims.identity == "carol" and claims.name == "Carol"
    assert claims.video.room == ROOM and claims.video.room_join
    assert not claims.video.can_publish and claims.video.can_publish_sources == ["microphone"]


# --- enforced by the server -----------------------------------------------------

JOIN_REFUSALS = BAD_TOKENS + [
    ("no token", lambda: None, "token_required"),
    ("wrong room", lambda: token(grant=VideoGrant(room="other", roomJoin=True)), "token_wrong_room"),
    ("no roomJoin grant", lambda: token(grant=VideoGrant(room=ROOM, roomAdmin=True)), "permission_denied"),
]


@pytest.fixture
async def connect(keyed):
    async with client_factory(keyed) as make:
        yield make


@pytest.mark.parametrize("make, code", [(m, c) for _, m, c in JOIN_REFUSALS], ids=[i for i, _, _ in JOIN_REFUSALS])
async def test_join_refused_with_its_code(keyed, connect, make, code):
    client = await connect()
    with pytest.raises(ClientError) as caught:
        await client.join(ROOM, "mallory", token=make())
    assert caught.value.code == code
    assert ROOM not in keyed.rooms.rooms
    assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_valid_token_sets_identity_and_name(keyed, connect):
    client = await connect()
    joined = await client.join(ROOM, "ignored", token=token("alice", name="Alice", metadata="m"))
    me = joined["participant"]
    assert (me["identity"], me["name"], me["metadata"]) == ("alice", "Alice", "m")


async def test_subscribe_only_token_cannot_publish(keyed, connect):
    viewer = await connect()
    await viewer.join(ROOM, token=token("viewer", grant=VideoGrant(room=ROOM, roomJoin=True, canPublish=False)))
    with pytest.raises(ClientError) as caught:
        await viewer.publish([ToneAudioTrack(), PatternVideoTrack()])
    assert caught.value.code == "permission_denied"
    assert keyed.rooms.rooms[ROOM].tracks() == []


async def test_screen_share_needs_its_source_grant(keyed, connect):
    grant = VideoGrant(room=ROOM, roomJoin=True, canPublishSources=["camera", "microphone"])
    presenter = await connect()
    await presenter.join(ROOM, token=token("presenter", grant=grant))
    with pytest.raises(ClientError) as caught:
        await presenter.publish([PatternVideoTrack()], sources=["screen_share"])
    assert caught.value.code == "permission_denied"
    assert "screen_share" in str(caught.value)
    presenter = await connect()
    await presenter.join(ROOM, token=token("presenter", grant=grant))
    infos = await presenter.publish([ToneAudioTrack(), PatternVideoTrack()], sources=["microphone", "camera"])
    assert [i["source"] for i in infos] == ["microphone", "camera"]


async def test_source_must_match_the_kind(keyed, connect):
    """A camera-only token cannot sneak video in as a 'microphone'."""
    grant = VideoGrant(room=ROOM, roomJoin=True, canPublishSources=["microphone"])
    client = await connect()
    await client.join(ROOM, token=token("sneaky", grant=grant))
    with pytest.raises(ClientError) as caught:
        await client.publish([PatternVideoTrack()], sources=["microphone"])
    assert caught.value.code == "permission_denied"


async def test_no_subscribe_grant(keyed, connect):
    publisher = await connect()
    await publisher.join(ROOM, token=token("pub"))
    infos = await publisher.publish([ToneAudioTrack()])
    lurker = await connect()
    await lurker.join(ROOM, token=token("lurker", grant=VideoGrant(room=ROOM, roomJoin=True, canSubscribe=False)))
    with pytest.raises(ClientError) as caught:
        await lurker.request({"type": "subscribe", "track_ids": [infos[0]["id"]]})
    assert caught.value.code == "permission_denied"
    participant = keyed.rooms.rooms[ROOM].participants[lurker.participant_id]
    assert participant.subscriber.downtracks() == []


async def test_hidden_participant_is_not_announced_and_cannot_publish(keyed, connect):
    host = await connect()
    await host.join(ROOM, token=token("host"))
    ghost = await connect()
    joined = await ghost.join(ROOM, token=token("ghost", grant=VideoGrant(room=ROOM, roomJoin=True, hidden=True)))
    assert [p["identity"] for p in joined["participants"]] == ["host"]
    late = await connect()
    joined = await late.join(ROOM, token=token("late"))
    assert sorted(p["identity"] for p in joined["participants"]) == ["host"]
    assert not [e for e in host.events if e["type"] == "participant_joined" and e["participant"]["identity"] == "ghost"]
    with pytest.raises(ClientError) as caught:
        await ghost.publish([ToneAudioTrack()])
    assert caught.value.code == "permission_denied"


async def test_same_identity_takes_over(keyed, connect):
    first = await connect()
    await first.join(ROOM, token=token("dup"))
    second = await connect()
    await second.join(ROOM, token=token("dup"))
    leave = await eventually(lambda: _has(first, "leave"))
    assert leave["reason"] == "duplicate_identity"
    assert [p.identity for p in keyed.rooms.rooms[ROOM].participants.values()] == ["dup"]


def _has(client: Client, event: str):
    return next((e for e in client.events if e["type"] == event), None)


# --- development token endpoint ---------------------------------------------------


async def test_dev_endpoint_hands_out_join_tokens(make_server):
    dev = await make_server(dev=True)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{dev.http}/dev/token", params={"room": "demo", "name": "Ann"}) as response:
            assert response.status == 200
            issued = (await response.json())["token"]
    async with Client(dev.url, ice_addresses=LOOPBACK) as client:
        with pytest.raises(ClientError) as caught:
            await client.join("demo", "Ann")
        assert caught.value.code == "token_required"
    async with Client(dev.url, ice_addresses=LOOPBACK) as client:
        joined = await client.join("demo", "", token=issued)
        assert joined["participant"]["name"] == "Ann"


async def _dev_token(server, **params) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.http}/dev/token", params={"room": ROOM, **params}) as response:
            assert response.status == 200
            return await response.json()


async def test_dev_tokens_are_not_signed_with_the_operators_keys(make_server):
    """Anyone who reaches /dev/token gets a join token, never one the
    operator's keys vouch for: it does not open the admin API."""
    dev = await make_server(dev=True, keys=KEYS)
    issued = (await _dev_token(dev, name="Ann"))["token"]
    with pytest.raises(AuthError) as caught:
        verify_token(issued, KEYS)
    assert caught.value.code == "token_unknown_key"
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {issued}"}
        async with http.get(f"{dev.http}/api/rooms", headers=headers) as response:
            assert response.status == 401
    forged = create_token(DEV_KEY, dev.app[CONFIG].dev_secret, "ops", VideoGrant(roomAdmin=True))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{dev.http}/api/rooms", headers={"Authorization": f"Bearer {forged}"}) as response:
            assert response.status == 401
    async with Client(dev.url, ice_addresses=LOOPBACK) as client:
        joined = await client.join(ROOM, "", token=issued)
        assert joined["participant"]["name"] == "Ann"


async def test_dev_caller_cannot_take_anothers_identity(make_server):
    dev = await make_server(dev=True, keys=KEYS)
    async with Client(dev.url, ice_addresses=LOOPBACK) as victim, Client(dev.url, ice_addresses=LOOPBACK) as mallory:
        await victim.join(ROOM, token=token("victim"))
        issued = await _dev_token(dev, name="victim", identity="victim")
        assert issued["identity"] != "victim"
        joined = await mallory.join(ROOM, token=issued["token"])
        assert joined["participant"]["identity"] == issued["identity"]
        assert joined["participant"]["name"] == "victim"
        assert (await victim.request({"type": "ping"}))["type"] == "pong"
        assert not _has(victim, "leave")
        identities = sorted(p.identity for p in dev.rooms.rooms[ROOM].participants.values())
        assert identities == sorted(["victim", issued["identity"]])


async def test_dev_key_tokens_are_refused_without_dev_mode(make_server):
    dev = await make_server(dev=True, keys=KEYS)
    issued = (await _dev_token(dev))["token"]
    keyed = await make_server(keys=KEYS)
    async with Client(keyed.url, ice_addresses=LOOPBACK) as client:
        with pytest.raises(ClientError) as caught:
            await client.join(ROOM, token=issued)
        assert caught.value.code == "token_unknown_key"


async def test_production_has_no_dev_endpoint(keyed):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{keyed.http}/dev/token", params={"room": "demo"}) as response:
            assert response.status == 404


async def test_data_needs_its_grant(keyed, connect):
    talker = await connect()
    await talker.join(ROOM, token=token("talker"))
    listener = await connect()
    await listener.join(ROOM, token=token("listener"))
    mute = await connect()
    await mute.join(ROOM, token=token("mute", grant=VideoGrant(room=ROOM, roomJoin=True, canPublishData=False)))
    with pytest.raises(ClientError) as caught:
        await mute.request({"type": "send_data", "payload": "psst"})
    assert caught.value.code == "permission_denied"
    await talker.request({"type": "send_data", "payload": "hi", "topic": "chat", "destination_identities": ["listener"]})
    data = await eventually(lambda: _has(listener, "data"))
    assert data == {"type": "data", "payload": "hi", "topic": "chat", "participant_id": talker.participant_id}
    assert not [e for e in mute.events if e["type"] == "data"]


def test_no_api_key_may_take_the_development_key_name():
    from signaling.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="reserved"):
        load_config(flags={"keys": {DEV_KEY: "d" * 40}, "dev": True}, env={})
