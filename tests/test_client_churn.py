"""The Python client follows a room with churn: the server recycles the
subscriber m-lines of those who left for those who come, and the client's
remote tracks must follow what the server says each m-line carries."""

from __future__ import annotations

import asyncio

from aiortc.mediastreams import MediaStreamError

from .media import PatternVideoTrack, ToneAudioTrack
from .waiting import eventually

NEWCOMERS = 6


def video_size(index: int) -> tuple[int, int]:
    """Each newcomer sends its own picture size, so a decoded frame says whose it is."""
    return 160 + 32 * index, 96 + 16 * index


async def frames_of(remote, count: int, timeout: float = 20) -> list:
    async def read() -> list:
        return [await remote.track.recv() for _ in range(count)]

    return await asyncio.wait_for(read(), timeout)


async def leftover_sizes(remote) -> set:
    """Read an ended remote track to its end; the picture sizes it still gave."""
    sizes = set()
    for _ in range(200):  # more than the client keeps queued
        try:
            frame = await asyncio.wait_for(remote.track.recv(), 5)
        except MediaStreamError:
            return sizes if remote.kind == "video" else set()
        if remote.kind == "video":
            sizes.add((frame.width, frame.height))
    raise AssertionError(f"a departed publisher's {remote.kind} track does not end")


async def test_watcher_sees_exactly_the_current_publishers(server, clients):
    watcher = await clients()
    await watcher.join("churn", "watcher")
    previous = []
    for index in range(NEWCOMERS):
        newcomer = await clients()
        await newcomer.join("churn", f"newcomer-{index}")
        width, height = video_size(index)
        published = await newcomer.publish([ToneAudioTrack(), PatternVideoTrack(width, height)])
        expected = {t["id"] for t in published}
        await eventually(lambda: set(watcher.remote_tracks) == expected, timeout=20,
                         message=f"newcomer {index}: watcher has {set(watcher.remote_tracks)}, not {expected}")
        remote = {t.kind: t for t in watcher.remote_tracks.values()}
        assert {t.participant_id for t in remote.values()} == {newcomer.participant_id}
        frames = await frames_of(remote["video"], 5)
        assert {(f.width, f.height) for f in frames} == {(width, height)}, f"newcomer {index}"
        await frames_of(remote["audio"], 3)
        for old in previous:  # ended: what was queued, then nothing from the newcomer
            assert await leftover_sizes(old) <= {video_size(index - 1)}
        await newcomer.leave()
        await newcomer.close()
        await eventually(lambda: not set(watcher.remote_tracks) & expected, timeout=20,
                         message=f"newcomer {index}'s tracks stayed after it left")
        previous = list(remote.values())
    slots = server.rooms.rooms["churn"].participants[watcher.participant_id].subscriber.slots
    assert len(slots) < 2 * NEWCOMERS  # m-lines were recycled: the case under test
