"""The admin REST API: authorization on every route, each action's effect on
real connected clients, and the OpenAPI document against the router."""

from __future__ import annotations

import aiohttp
import pytest
from openapi_spec_validator import validate

from signaling.admin import ROUTES
from signaling.auth import VideoGrant, create_token
from signaling.client import Client, ClientError

from .conftest import API_KEY, API_SECRET, KEYS, LOOPBACK
from .media import ToneAudioTrack
from .waiting import eventually

ADMIN = create_token(API_KEY, API_SECRET, "ops", VideoGrant(roomAdmin=True, roomCreate=True, roomList=True))
JOIN_ONLY = create_token(API_KEY, API_SECRET, "user", VideoGrant(room="r", roomJoin=True))
FORGED = create_token(API_KEY, "f" * 40, "ops", VideoGrant(roomAdmin=True, roomCreate=True, roomList=True))

BODIES = {
    "create_room": {"name": "r"},
    "update_room": {"metadata": "m"},
    "update_participant": {"metadata": "m"},
    "mute_track": {"muted": True},
    "send_data": {"payload": "hi"},
    "start_recording": {},
    "start_transcription": {},
}
VALUES = {"room": "r", "identity": "alice", "track_id": "TR_x", "transcript_id": "TR_y", "file": "transcript.vtt",
          "recording_id": "RC_x"}


@pytest.fixture
async def api(make_server):
    server = await make_server(keys=KEYS)
    async with aiohttp.ClientSession() as http:
        yield Api(server, http)


class Api:
    def __init__(self, server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http

    async def call(self, method: str, path: str, body=None, token: str | None = ADMIN) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.server.http + path, json=body, headers=headers) as response:
            data = await response.json() if response.status != 204 else {}
            return response.status, data

    async def client(self, room: str, identity: str) -> Client:
        client = Client(self.server.url, ice_addresses=LOOPBACK)
        await client.connect()
        await client.join(room, identity, token=create_token(
            API_KEY, API_SECRET, identity, VideoGrant(room=room, roomJoin=True)))
        return client


def _path(route) -> str:
    return route.path.format(**VALUES)


ROUTE_IDS = [f"{r.method} {r.path}" for r in ROUTES]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_every_route_needs_a_valid_admin_token(api, route):
    body = BODIES.get(route.handler.__name__)
    status, data = await api.call(route.method, _path(route), body, token=None)
    assert (status, data["error"]["code"]) == (401, "token_required")
    status, data = await api.call(route.method, _path(route), body, token=FORGED)
    assert (status, data["error"]["code"]) == (401, "token_bad_signature")
    status, data = await api.call(route.method, _path(route), body, token=JOIN_ONLY)
    assert (status, data["error"]["code"]) == (403, "permission_denied")


# A room's finished recordings outlive it: those routes answer without the room.
ROOM_ROUTES = [r for r in ROUTES if "{room}" in r.path and "/recordings" not in r.path]


@pytest.mark.parametrize("route", ROOM_ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_unknown_room_is_404(api, route):
    status, data = await api.call(route.method, _path(route), BODIES.get(route.handler.__name__))
    assert (status, data["error"]["code"]) == (404, "room_not_found")


async def test_rooms_create_list_update_delete(api):
    status, room = await api.call("POST", "/api/rooms", {"name": "board", "max_participants": 2, "metadata": "a"})
    assert status == 201 and room["name"] == "board" and room["max_participants"] == 2
    assert (await api.call("POST", "/api/rooms", {"name": "board"}))[0] == 409
    status, data = await api.call("POST", "/api/rooms", {"name": ""})
    assert (status, data["error"]["code"]) == (400, "bad_request")
    status, data = await api.call("GET", "/api/rooms")
    assert status == 200 and [r["name"] for r in data["rooms"]] == ["board"]

    alice = await api.client("board", "alice")
    try:
        status, room = await api.call("PATCH", "/api/rooms/board", {"metadata": "b"})
        assert status == 200 and room["metadata"] == "b" and room["num_participants"] == 1
        await eventually(lambda: _events(alice, "room_updated"))
        assert _events(alice, "room_updated")[0]["room"]["metadata"] == "b"

        assert (await api.call("DELETE", "/api/rooms/board"))[0] == 204
        await eventually(lambda: _events(alice, "leave"))
        assert _events(alice, "leave")[0]["reason"] == "room_deleted"
        assert (await api.call("GET", "/api/rooms"))[1]["rooms"] == []
    finally:
        await alice.close()


async def test_participants_list_update_mute_data_remove(api):
    alice = await api.client("r", "alice")
    bob = await api.client("r", "bob")
    try:
        [audio] = await alice.publish([ToneAudioTrack()])
        status, data = await api.call("GET", "/api/rooms/r/participants")
        assert status == 200
        assert sorted(p["identity"] for p in data["participants"]) == ["alice", "bob"]
        status, alice_info = await api.call("GET", "/api/rooms/r/participants/alice")
        assert status == 200 and [t["id"] for t in alice_info["tracks"]] == [audio["id"]]
        assert (await api.call("GET", "/api/rooms/r/participants/nobody"))[0] == 404

        status, data = await api.call("PATCH", "/api/rooms/r/participants/alice", {"name": "Alice", "metadata": "x"})
        assert status == 200 and (data["name"], data["metadata"]) == ("Alice", "x")
        await eventually(lambda: _events(bob, "participant_updated"))
        assert _events(bob, "participant_updated")[0]["participant"]["metadata"] == "x"

        status, data = await api.call("POST", f"/api/rooms/r/participants/alice/tracks/{audio['id']}/mute", {"muted": True})
        assert status == 200 and data["muted"] is True
        await eventually(lambda: _events(alice, "track_muted") and _events(bob, "track_muted"))
        assert (await api.call("POST", "/api/rooms/r/participants/alice/tracks/TR_nope/mute", {"muted": True}))[0] == 404

        status, data = await api.call("POST", "/api/rooms/r/data", {"payload": "hello", "topic": "chat",
                                                                     "destination_identities": ["bob"]})
        assert status == 200 and data["recipients"] == 1
        await eventually(lambda: _events(bob, "data"))
        assert _events(bob, "data")[0] == {"type": "data", "payload": "hello", "topic": "chat"}
        assert not _events(alice, "data")

        assert (await api.call("DELETE", "/api/rooms/r/participants/bob"))[0] == 204
        await eventually(lambda: _events(bob, "leave"))
        assert _events(bob, "leave")[0]["reason"] == "removed"
        await eventually(lambda: _events(alice, "participant_left"))
    finally:
        await alice.close()
        await bob.close()


async def test_room_scoped_admin_token_stays_in_its_room(api):
    scoped = create_token(API_KEY, API_SECRET, "mod", VideoGrant(room="mine", roomAdmin=True))
    await api.call("POST", "/api/rooms", {"name": "mine"})
    await api.call("POST", "/api/rooms", {"name": "theirs"})
    assert (await api.call("GET", "/api/rooms/mine/participants", token=scoped))[0] == 200
    assert (await api.call("GET", "/api/rooms/theirs/participants", token=scoped))[0] == 403
    assert (await api.call("GET", "/api/rooms", token=scoped))[0] == 403


SCOPED_TO_MINE = create_token(API_KEY, API_SECRET, "mod", VideoGrant(
    room="mine", roomAdmin=True, roomCreate=True, roomList=True))


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_room_scoped_token_cannot_act_on_another_room(api, route):
    """Every grant of a token naming room "mine" stops at that room: it
    cannot create, delete, administer or even list room "theirs"."""
    await api.call("POST", "/api/rooms", {"name": "theirs"})
    body = {"name": "theirs-too"} if route.handler.__name__ == "create_room" else BODIES.get(route.handler.__name__)
    path = route.path.format(**{**VALUES, "room": "theirs"})
    status, data = await api.call(route.method, path, body, token=SCOPED_TO_MINE)
    assert (status, data["error"]["code"]) == (403, "permission_denied")
    names = [r["name"] for r in (await api.call("GET", "/api/rooms"))[1]["rooms"]]
    assert names == ["theirs"]


async def test_room_scoped_token_creates_and_deletes_its_room(api):
    status, room = await api.call("POST", "/api/rooms", {"name": "mine"}, token=SCOPED_TO_MINE)
    assert status == 201 and room["name"] == "mine"
    assert (await api.call("PATCH", "/api/rooms/mine", {"metadata": "m"}, token=SCOPED_TO_MINE))[0] == 200
    assert (await api.call("DELETE", "/api/rooms/mine", token=SCOPED_TO_MINE))[0] == 204
    assert (await api.call("GET", "/api/rooms"))[1]["rooms"] == []


async def test_open_server_refuses_admin_calls(server):
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with http.get(f"{server.http}/api/rooms", headers=headers) as response:
            assert response.status == 401


async def test_openapi_document_validates_and_matches_routes(api):
    async with api.http.get(f"{api.server.http}/api/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    validate(document)
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    served = {
        (route.method, route.resource.canonical)
        for route in api.server.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api") and route.method != "HEAD"
    }
    assert documented == served
    for path, ops in document["paths"].items():
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", [])}
            assert declared == {v for v in VALUES if "{" + v + "}" in path}


def _events(client: Client, kind: str) -> list[dict]:
    return [e for e in client.events if e["type"] == kind]


async def test_recording_cap_through_the_admin_api(make_server, tmp_path):
    server = await make_server(keys=KEYS, sfu={"recording_dir": str(tmp_path), "max_recordings_per_room": 1})
    async with aiohttp.ClientSession() as http:
        api = Api(server, http)
        alice = await api.client("r", "alice")
        try:
            await alice.publish([ToneAudioTrack()])
            status, first = await api.call("POST", "/api/rooms/r/recording", {})
            assert status == 201 and first["path"].startswith(str(tmp_path))
            status, data = await api.call("POST", "/api/rooms/r/recording", {})
            assert (status, data["error"]["code"]) == (409, "too_many_recordings")
            status, data = await api.call("DELETE", "/api/rooms/r/recording")
            assert status == 200 and [r["id"] for r in data["recordings"]] == [first["id"]]
        finally:
            await alice.close()


async def test_a_recording_is_started_the_same_through_the_websocket_and_the_admin_api(make_server, tmp_path):
    """Same refusals, and the admin API answers with the WebSocket's fields (and a few more)."""
    server = await make_server(keys=KEYS, sfu={"recording_dir": str(tmp_path)})
    async with aiohttp.ClientSession() as http:
        api = Api(server, http)
        alice = Client(server.url, ice_addresses=LOOPBACK)
        await alice.connect()
        try:
            await alice.join("r", "alice", token=create_token(
                API_KEY, API_SECRET, "alice", VideoGrant(room="r", roomJoin=True, roomAdmin=True)))
            with pytest.raises(ClientError) as refused:
                await alice.request({"type": "start_recording"})
            status, data = await api.call("POST", "/api/rooms/r/recording", {})
            assert refused.value.code == "not_allowed" and (status, data["error"]["code"]) == (409, "nothing_to_record")
            assert data["error"]["message"] in str(refused.value)

            [track] = await alice.publish([ToneAudioTrack()])
            with pytest.raises(ClientError) as refused:
                await alice.request({"type": "start_recording", "track_ids": [track["id"], "TR_gone"]})
            status, data = await api.call("POST", "/api/rooms/r/recording", {"track_ids": [track["id"], "TR_gone"]})
            assert refused.value.code == "unknown_track" and (status, data["error"]["code"]) == (404, "track_not_found")
            assert "TR_gone" in data["error"]["message"] and data["error"]["message"] in str(refused.value)

            named = {"track_ids": [track["id"], track["id"]]}  # named twice, recorded once
            ws = (await alice.request({"type": "start_recording", **named}))["recording"]
            status, rest = await api.call("POST", "/api/rooms/r/recording", named)
            assert status == 201 and set(ws) == {"recording_id", "path", "track_ids", "kind"}
            for recording in (ws, rest):
                assert (recording["track_ids"], recording["kind"]) == ([track["id"]], "tracks")
                assert recording["path"].startswith(str(tmp_path))
            assert rest["recording_id"] == rest["id"] != ws["recording_id"] and rest["room"] == "r"
        finally:
            await api.call("DELETE", "/api/rooms/r/recording")
            await alice.close()
