"""Bad input gets an error with a code; the session and the room carry on."""

from __future__ import annotations

import asyncio
import json

import pytest

from signaling.client import ClientError

from .frames import count_frames, first_frame
from .media import PatternVideoTrack, ToneAudioTrack


async def raw_exchange(client, text: str) -> dict:
    """Send raw text and return the next message that is not an event."""
    before = len(client.events)
    await client.send_raw(text)
    for _ in range(50):
        for message in client.events[before:]:
            if message["type"] in ("error", "ok", "pong"):
                return message
        await asyncio.sleep(0.05)
    raise AssertionError("no response")


@pytest.mark.parametrize(
    "text, code",
    [
        pytest.param("{not json", "bad_json", id="malformed-json"),
        pytest.param("[1, 2]", "bad_message", id="not-an-object"),
        pytest.param('{"type": "teleport", "id": 1}', "bad_message", id="unknown-type"),
        pytest.param('{"type": "join", "id": 1}', "bad_message", id="join-missing-room"),
        pytest.param('{"type": "publish", "id": 1}', "bad_message", id="publish-missing-sdp"),
        pytest.param('{"type": "join", "id": 1, "room": "r", "extra": 1}', "bad_message", id="unknown-field"),
        pytest.param('{"type": "ping"}', "bad_message", id="request-without-id"),
        pytest.param("[" * 5000, "bad_json", id="deeply-nested-unclosed"),
        pytest.param("[" * 5000 + "]" * 5000, "bad_json", id="deeply-nested"),
        pytest.param('{"type": "ping", "id": "\\ud800"}', "bad_message", id="lone-surrogate-id"),
        pytest.param('{"type": "ping", "id": 1, "x": "\\udfff"}', "bad_message", id="lone-surrogate-value"),
        pytest.param('{"type": "' + "t" * 100_000 + '", "id": 1}', "bad_message", id="huge-type"),
    ],
)
async def test_malformed_messages_get_error_codes(clients, text, code):
    client = await clients()
    response = await raw_exchange(client, text)
    assert response["type"] == "error" and response["code"] == code
    assert response["message"] and len(response["message"]) < 2000
    assert (await client.request({"type": "ping"}))["type"] == "pong"


@pytest.mark.parametrize(
    "request_, code",
    [
        pytest.param({"type": "publish", "sdp": "v=0\r\n"}, "not_joined", id="publish"),
        pytest.param({"type": "subscribe", "track_ids": ["TR_x"]}, "not_joined", id="subscribe"),
        pytest.param({"type": "mute", "track_id": "TR_x", "muted": True}, "not_joined", id="mute"),
        pytest.param({"type": "subscriber_answer", "sdp": "v=0\r\n"}, "not_joined", id="answer"),
    ],
)
async def test_requests_before_join_are_refused(clients, request_, code):
    client = await clients()
    with pytest.raises(ClientError) as error:
        await client.request(request_)
    assert error.value.code == code
    await client.join("after", "late")  # the session is still usable


async def test_error_echoes_request_id(clients):
    client = await clients()
    response = await raw_exchange(client, json.dumps({"type": "unpublish", "id": "abc", "track_id": "x"}))
    assert response == {**response, "type": "error", "id": "abc", "code": "not_joined"}


async def test_unsupported_version_and_double_join(clients):
    client = await clients()
    with pytest.raises(ClientError) as error:
        await client.request({"type": "join", "room": "v", "version": 99})
    assert error.value.code == "unsupported_version"
    await client.join("v", "ok")
    with pytest.raises(ClientError) as error:
        await client.join("v", "again")
    assert error.value.code == "already_joined"


@pytest.mark.parametrize(
    "sdp",
    [
        pytest.param("hello", id="not-sdp"),
        pytest.param("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\n", id="broken-rtpmap"),
        pytest.param("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
                     "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
                     "a=sendonly\r\na=rtpmap:111 opus/48000/2\r\n", id="no-bundle-no-ice"),
    ],
)
async def test_bad_publish_sdp(clients, sdp):
    client = await clients()
    await client.join("sdp", "bad")
    with pytest.raises(ClientError) as error:
        await client.request({"type": "publish", "sdp": sdp})
    assert error.value.code == "bad_sdp"
    assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_subscribe_unknown_or_foreign_track(clients):
    alice = await clients()
    await alice.join("room-a", "alice")
    foreign = await alice.publish([ToneAudioTrack()])
    bob = await clients()
    await bob.join("room-b", "bob")
    for track_id in ("TR_does_not_exist", foreign[0]["id"]):
        with pytest.raises(ClientError) as error:
            await bob.request({"type": "subscribe", "track_ids": [track_id]})
        assert error.value.code == "unknown_track"
        assert "room-a" not in str(error.value)
    with pytest.raises(ClientError) as error:
        await bob.request({"type": "unsubscribe", "track_ids": [foreign[0]["id"]]})
    assert error.value.code == "unknown_track"
    with pytest.raises(ClientError) as error:
        await bob.request({"type": "subscriber_answer", "sdp": "v=0\r\n"})
    assert error.value.code == "no_offer_pending"
    with pytest.raises(ClientError) as error:
        await bob.request({"type": "trickle", "target": "publisher", "candidate": "candidate:garbage"})
    assert error.value.code == "bad_candidate"


async def test_bad_input_does_not_disturb_others(server, clients):
    publisher = await clients()
    await publisher.join("calm", "alice")
    await publisher.publish([ToneAudioTrack(), PatternVideoTrack(320, 240)])
    viewer = await clients()
    await viewer.join("calm", "bob")
    video = next(t for t in await viewer.wait_tracks(2) if t.kind == "video")
    await first_frame(video.track)
    assert len(await count_frames(video.track, 1.0)) >= 10

    troublemaker = await clients()
    await troublemaker.join("calm", "mallory")
    for text in ["{", '{"type": "publish", "id": 1, "sdp": "garbage"}',
                 '{"type": "subscribe", "id": 2, "track_ids": ["nope"]}', "x" * 1000]:
        await troublemaker.send_raw(text)
    errors = await _wait_errors(troublemaker, 4)
    assert [e["code"] for e in errors] == ["bad_json", "bad_sdp", "unknown_track", "bad_json"]

    assert len(await count_frames(video.track, 1.5)) >= 15
    assert set(server.rooms.rooms["calm"].participants) == {
        publisher.participant_id, viewer.participant_id, troublemaker.participant_id
    }


async def test_oversized_message_closes_only_that_socket(server, clients):
    """Beyond 4x the message limit aiohttp closes the socket (code 1009);
    between the limit and that, the session answers message_too_large
    (tests/test_limits.py)."""
    bystander = await clients()
    await bystander.join("big", "bystander")
    client = await clients()
    await client.join("big", "huge")
    await client.send_raw(json.dumps({"type": "ping", "id": 1, "pad": "x" * 1_100_000}))
    await asyncio.wait_for(client.closed.wait(), 5)
    left = await bystander.wait_event("participant_left")
    assert left["participant_id"] == client.participant_id
    assert (await bystander.request({"type": "ping"}))["type"] == "pong"


async def _wait_errors(client, count: int) -> list[dict]:
    for _ in range(100):
        errors = [e for e in client.events if e["type"] == "error"]
        if len(errors) >= count:
            return errors
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} errors, got {client.events}")
