"""What a server leaves behind: open fds, live tasks, and a host whose send
m-lines are recycled while clients come and go."""

from __future__ import annotations

import asyncio
import gc
import os

from .media import ToneAudioTrack
from .waiting import eventually


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if not t.done()])


def describe_tasks() -> str:
    from collections import Counter

    names = Counter(t.get_coro().__qualname__ for t in asyncio.all_tasks() if not t.done())
    return ", ".join(f"{name} x{count}" for name, count in names.most_common())


async def settle(server) -> None:
    await asyncio.sleep(0.3)
    gc.collect()


async def one_cycle(server, room: str, host=None) -> None:
    client = server.client()
    await client.connect()
    try:
        await client.join(room, "cycler")
        await client.publish([ToneAudioTrack()])
        remote = (await client.wait_tracks(1))[0]
        await asyncio.wait_for(remote.track.recv(), 5)  # media flows: both PCs up
        if host is not None:  # and the host hears the cycler
            remote = (await host.wait_tracks(1))[0]
            await asyncio.wait_for(remote.track.recv(), 5)
    finally:
        await client.leave()
        await client.close()


async def host_and_cycles(server, cycles: int) -> None:
    """A host publishes; ``cycles`` clients join, exchange media and leave; the
    host leaves last. Checks that m-lines were recycled on the host's side."""
    host = server.client()
    await host.connect()
    await host.join("cycles", "host")
    await host.publish([ToneAudioTrack()])
    await one_cycle(server, "cycles", host)
    for _ in range(cycles):
        await one_cycle(server, "cycles")
    await eventually(lambda: len(server.rooms.rooms["cycles"].participants) == 1, timeout=10)
    host_side = server.rooms.rooms["cycles"].participants[host.participant_id]
    assert len(host_side.subscriber.slots) <= 2, "send m-lines were not recycled"
    await host.leave()
    await host.close()
