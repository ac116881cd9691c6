"""Participants are freed however they go: leave, socket loss, ICE loss."""

from __future__ import annotations

import asyncio

import pytest

from signaling.protocol import DROPPED

from .conftest import client_factory
from .leaks import describe_tasks, host_and_cycles, live_tasks, open_fds, settle
from .media import PatternVideoTrack, ToneAudioTrack
from .waiting import eventually


@pytest.mark.slow
async def test_fifty_join_leave_cycles_leak_nothing(server):
    await host_and_cycles(server, 1)  # warm-up: pools, caches, lazy imports
    await eventually(lambda: not server.rooms.rooms)
    await settle(server)
    fds, tasks = open_fds(), live_tasks()

    await host_and_cycles(server, 50)
    await eventually(lambda: not server.rooms.rooms, timeout=10, message="the room outlived everyone")
    await settle(server)
    await eventually(lambda: live_tasks() <= tasks, timeout=5,
                     message=f"tasks grew from {tasks}: {describe_tasks()}")
    await eventually(lambda: open_fds() <= fds, timeout=5,
                     message=f"file descriptors grew from {fds} to {open_fds()}")


async def test_last_leave_removes_the_room(server, clients):
    client = await clients()
    await client.join("ephemeral", "solo")
    assert "ephemeral" in server.rooms.rooms
    await client.leave()
    await eventually(lambda: "ephemeral" not in server.rooms.rooms)


async def test_socket_loss_removes_participant_and_tracks(make_server):
    """With resuming off (resume_grace 0); tests/test_resume.py has the grace."""
    server = await make_server(sfu={"resume_grace": 0})
    async with client_factory(server) as clients:
        await _socket_loss(server, clients)


async def _socket_loss(server, clients) -> None:
    viewer = await clients()
    await viewer.join("drop", "viewer")
    leaver = await clients()
    await leaver.join("drop", "leaver")
    await leaver.publish([ToneAudioTrack(), PatternVideoTrack(320, 240)])
    await viewer.wait_tracks(2)
    await leaver._ws.close(code=DROPPED)  # no leave message: the socket just goes away

    left = await viewer.wait_event("participant_left")
    assert left["participant_id"] == leaver.participant_id
    assert left["reason"] == "disconnected"
    room = server.rooms.rooms["drop"]
    assert list(room.participants) == [viewer.participant_id]
    viewer_side = room.participants[viewer.participant_id]
    assert viewer_side.subscriber.downtracks() == []


async def test_ice_loss_removes_participant(make_server):
    server = await make_server(sfu={"resume_grace": 0})
    async with client_factory(server) as clients:
        await _ice_loss(clients)


async def _ice_loss(clients) -> None:
    viewer = await clients()
    await viewer.join("ice", "viewer")
    leaver = await clients()
    await leaver.join("ice", "leaver")
    await leaver.publish([ToneAudioTrack()])
    remote = (await viewer.wait_tracks(1))[0]
    await asyncio.wait_for(remote.track.recv(), 5)  # media flows
    await leaver.publisher.close()  # peer connection gone, signaling still open

    left = await viewer.wait_event("participant_left", timeout=15)
    assert left["participant_id"] == leaver.participant_id
    assert left["reason"].startswith("connection_")
    leave = await eventually(lambda: [e for e in leaver.events if e["type"] == "leave"])
    assert leave[0]["reason"].startswith("connection_")
    await asyncio.wait_for(leaver.closed.wait(), 5)
