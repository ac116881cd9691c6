"""Reconnect and resume: a dropped participant stays in the room for a grace
period, comes back with its resume token as the same participant, and its
subscribers' video carries on; one that does not come back leaves and is
freed like any other."""

from __future__ import annotations

import asyncio
import time

import pytest

from signaling.auth import VideoGrant, create_token
from signaling.client import ClientError
from signaling.protocol import DROPPED

from .conftest import API_KEY, API_SECRET, KEYS, client_factory
from .frames import count_frames
from .loss import wrap_rtp_sender
from .leaks import describe_tasks, host_and_cycles, live_tasks, open_fds, settle
from .media import PatternVideoTrack, ToneAudioTrack
from .waiting import eventually


def events(client, kind: str) -> list[dict]:
    return [e for e in client.events if e["type"] == kind]


def states_of(client, participant_id: str) -> list[str]:
    return [e["state"] for e in events(client, "participant_state") if e["participant_id"] == participant_id]


@pytest.mark.slow
async def test_resume_keeps_the_participant_and_its_video(server, clients):
    viewer = await clients()
    await viewer.join("resume", "viewer")
    await viewer.publish([ToneAudioTrack()])
    talker = await clients()
    await talker.join("resume", "talker")
    published = await talker.publish([ToneAudioTrack(), PatternVideoTrack(320, 240)])
    await talker.wait_tracks(1)
    remote = {t.kind: t for t in await viewer.wait_tracks(2) if t.participant_id == talker.participant_id}
    assert len(await count_frames(remote["video"].track, 2.0)) >= 8
    room = server.rooms.rooms["resume"]
    viewer_side = room.participants[viewer.participant_id]
    downtrack = next(d for d in viewer_side.subscriber.downtracks() if d.kind == "video")
    sent = capture_sent(viewer_side.subscriber.transport, downtrack.ssrc)
    await eventually(lambda: sent, timeout=5)

    await talker.disconnect()
    cut = time.monotonic()
    await eventually(lambda: states_of(viewer, talker.participant_id) == ["reconnecting"], timeout=5)
    assert room.participants[talker.participant_id].info()["state"] == "reconnecting"
    await asyncio.sleep(1.0)  # a while without the talker

    response = await talker.resume([ToneAudioTrack(), PatternVideoTrack(320, 240)])
    assert response["resumed"] is True
    assert response["participant"]["id"] == talker.participant_id
    assert [t["id"] for t in talker.published] == [t["id"] for t in published]
    await eventually(lambda: states_of(viewer, talker.participant_id) == ["reconnecting", "active"], timeout=5)

    # the viewer's own m-line and down-track carry on: frames decode again
    sent_before = downtrack.packets_sent
    frames = await count_frames(remote["video"].track, 3.0)
    assert len(frames) >= 15, f"only {len(frames)} frames after the resume"
    assert downtrack in viewer_side.subscriber.downtracks()
    assert downtrack.packets_sent > sent_before
    # one continuous RTP stream for the viewer: the next sequence number, and
    # a timestamp that moved on by about the time the talker was away
    before = [p for p in sent if p[0] < cut][-1]
    after = next(p for p in sent if p[0] > cut)
    assert after[1] == (before[1] + 1) & 0xFFFF, (before, after)
    gap = ((after[2] - before[2]) & 0xFFFFFFFF) / 90000
    assert 0.8 * (after[0] - before[0]) < gap < 1.5 * (after[0] - before[0]) + 0.1, (gap, before, after)
    assert not events(viewer, "participant_left") and not events(viewer, "track_unpublished")
    assert not events(viewer, "track_published")[len(published):]  # nothing announced again
    # and the talker has its subscription back on a fresh subscriber PC
    [heard] = await talker.wait_tracks(1)
    assert heard.participant_id == viewer.participant_id
    await asyncio.wait_for(heard.track.recv(), 5)


def capture_sent(transport, ssrc: int) -> list[tuple[float, int, int]]:
    """(time, sequence number, timestamp) of each first transmission to ``ssrc``."""
    sent = []

    def capturing(send):
        def capture(head: bytes, payload: bytes) -> bool:
            if int.from_bytes(head[8:12], "big") == ssrc:
                sent.append((time.monotonic(), int.from_bytes(head[2:4], "big"), int.from_bytes(head[4:8], "big")))
            return send(head, payload)

        return capture

    wrap_rtp_sender(transport, capturing)
    return sent


async def test_resume_takes_over_a_stale_connection(server, clients):
    """The server still thinks the old socket alive (no close seen yet): a
    resume on a new one wins, and the old one is closed."""
    alice = await clients()
    await alice.join("stale", "alice")
    await alice.publish([ToneAudioTrack()])
    bob = await clients()
    await bob.join("stale", "bob")
    await bob.wait_tracks(1)
    comeback = await clients()
    response = await comeback.request({"type": "resume", "room": "stale", "token": alice.resume_token})
    assert response["participant"]["id"] == alice.participant_id
    await asyncio.wait_for(alice.closed.wait(), 5)
    assert events(alice, "reconnect")[0]["reason"] == "resumed"
    await eventually(lambda: states_of(bob, alice.participant_id) == ["reconnecting", "active"], timeout=5)
    assert not events(bob, "participant_left")
    assert server.rooms.rooms["stale"].participants[alice.participant_id].state == "active"


async def test_others_see_reconnecting_then_left_after_the_grace(make_server):
    server = await make_server(sfu={"resume_grace": 1.0})
    async with client_factory(server) as make:
        viewer = await make()
        await viewer.join("grace", "viewer")
        leaver = await make()
        await leaver.join("grace", "leaver")
        await leaver.publish([ToneAudioTrack()])
        await viewer.wait_tracks(1)
        await leaver._ws.close(code=DROPPED)  # only the socket goes (a 1000 close is a leave)

        await eventually(lambda: states_of(viewer, leaver.participant_id) == ["reconnecting"], timeout=5)
        assert not events(viewer, "participant_left")
        left = await viewer.wait_event("participant_left", timeout=10)
        assert left == {"type": "participant_left", "participant_id": leaver.participant_id,
                        "reason": "disconnected"}
        assert list(server.rooms.rooms["grace"].participants) == [viewer.participant_id]


async def drop_and_expire(server, room: str) -> None:
    """A publisher drops and never comes back; a viewer sees it leave."""
    async with client_factory(server) as make:
        viewer = await make()
        await viewer.join(room, "viewer")
        leaver = await make()
        await leaver.join(room, "leaver")
        await leaver.publish([ToneAudioTrack(), PatternVideoTrack(160, 120)])
        for remote in await viewer.wait_tracks(2):
            await asyncio.wait_for(remote.track.recv(), 5)  # media flows: DTLS is up
        await leaver.publisher.close()  # media connection first: the server suspends it
        await asyncio.wait_for(leaver.closed.wait(), 5)  # ... and closes its socket
        assert events(leaver, "reconnect")[0]["reason"].startswith("connection_")
        await viewer.wait_event("participant_left", timeout=10)
        await viewer.leave()


@pytest.mark.slow
async def test_a_participant_gone_past_the_grace_is_freed(make_server):
    server = await make_server(sfu={"resume_grace": 0.5})
    await drop_and_expire(server, "warm")  # warm-up: pools, caches, lazy imports
    await host_and_cycles(server, 1)
    await eventually(lambda: not server.rooms.rooms)
    await settle(server)
    fds, tasks = open_fds(), live_tasks()

    for index in range(3):
        await drop_and_expire(server, f"expire{index}")
    await eventually(lambda: not server.rooms.rooms, timeout=10, message="the room outlived everyone")
    await settle(server)
    await eventually(lambda: live_tasks() <= tasks, timeout=5,
                     message=f"tasks grew from {tasks}: {describe_tasks()}")
    await eventually(lambda: open_fds() <= fds, timeout=5,
                     message=f"file descriptors grew from {fds} to {open_fds()}")


# --- resume token errors ---------------------------------------------------------


async def resume_error(make, room: str, token: str) -> str:
    client = await make()
    with pytest.raises(ClientError) as caught:
        await client.request({"type": "resume", "room": room, "token": token})
    return caught.value.code


async def test_resume_token_errors(make_server):
    server = await make_server(sfu={"resume_grace": 1.0})
    async with client_factory(server) as make:
        alice = await make()
        first = (await alice.join("tokens", "alice"))["resume_token"]
        await (await make()).join("tokens", "bob")  # someone stays: the room lives on
        assert await resume_error(make, "tokens", "garbage") == "resume_token_invalid"
        forged = first[:-3] + ("AAA" if not first.endswith("AAA") else "BBB")
        assert await resume_error(make, "tokens", forged) == "resume_token_invalid"
        assert await resume_error(make, "elsewhere", first) == "resume_wrong_room"

        await alice.disconnect()
        second = (await alice.resume())["resume_token"]
        assert second != first
        assert await resume_error(make, "tokens", first) == "resume_token_used"
        with pytest.raises(ClientError) as caught:  # one socket, one participant
            await alice.request({"type": "resume", "room": "tokens", "token": second})
        assert caught.value.code == "already_joined"

        await alice.disconnect()
        await eventually(lambda: alice.participant_id not in server.rooms.rooms["tokens"].participants,
                         timeout=10)
        assert await resume_error(make, "tokens", second) == "resume_expired"


async def test_resume_keeps_the_token_grants(make_server):
    server = await make_server(keys=KEYS)
    grant = VideoGrant(room="grants", roomJoin=True, canPublish=False)
    async with client_factory(server) as make:
        viewer = await make()
        await viewer.join("grants", "viewer", token=create_token(API_KEY, API_SECRET, "viewer", grant))
        await viewer.disconnect()
        response = await viewer.resume()
        assert response["participant"]["identity"] == "viewer"
        with pytest.raises(ClientError) as caught:
            await viewer.publish([ToneAudioTrack()])
        assert caught.value.code == "permission_denied"
