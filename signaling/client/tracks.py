"""Remote tracks: what the client receives from the SFU.

A RemoteTrack's ``track`` is a MediaStreamTrack: ``await track.recv()`` gives
frames decoded by aiortc.  The server recycles subscriber m-lines, and aiortc
raises one "track" per transceiver only, so the client maps each offer's mids
to the server's track ids itself and gives every track carried on an m-line
its own RemoteTrack, fed from that m-line's receiver (a Feed) while it carries
that track.
"""

from __future__ import annotations

import asyncio
import time
from typing import Optional

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

#: Decoded frames a remote track holds for a reader that is behind; older ones
#: are dropped (a bot that never reads a track must not grow without bound).
MAX_QUEUED_FRAMES = 60


class FeedTrack(MediaStreamTrack):
    """The frames of one remote track, as the m-line's feed hands them on."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._frames: asyncio.Queue = asyncio.Queue()

    def push(self, frame) -> None:
        if self._frames.qsize() >= MAX_QUEUED_FRAMES:
            self._frames.get_nowait()
        self._frames.put_nowait(frame)

    def end(self) -> None:
        self._frames.put_nowait(None)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._frames.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


class RemoteTrack:
    """A track received from the SFU, with what the server said about it.
    ``track`` ends when the server no longer sends it on ``mid``."""

    def __init__(self, receiver, mid: str, track_id: str, participant_id: str) -> None:
        self.receiver = receiver  # aiortc RTCRtpReceiver of the m-line (getStats)
        self.mid = mid
        self.track = FeedTrack(receiver.track.kind)
        self.track_id = track_id
        self.participant_id = participant_id
        self.kind = self.track.kind


class Feed:
    """One subscriber m-line: reads its receiver's frames and hands them to the
    RemoteTrack it carries now (none while inactive: those frames are dropped).

    aiortc's jitter buffer lets out a track's last frame only when the next
    packet comes, which on a recycled m-line is the next track's: a frame
    whose media time is from before the switch (the server's numbering runs on
    with the wall clock across it) is the previous track's and is dropped."""

    def __init__(self, receiver) -> None:
        self.receiver = receiver
        self.remote: Optional[RemoteTrack] = None
        self._last: Optional[tuple[float, float]] = None  # (media time, arrival) of the newest frame
        self._stale_before: Optional[float] = None
        self.task = asyncio.ensure_future(self._pump())

    def carry(self, remote: Optional[RemoteTrack]) -> None:
        if self.remote is not None:
            self.remote.track.end()
        self.remote = remote
        if remote is not None and self._last is not None:
            media_time, arrival = self._last
            self._stale_before = media_time + (time.monotonic() - arrival) / 2

    async def _pump(self) -> None:
        try:
            while True:
                frame = await self.receiver.track.recv()
                media_time = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                if media_time is not None:
                    self._last = (media_time, time.monotonic())
                stale = None not in (media_time, self._stale_before) and media_time < self._stale_before
                if self.remote is not None and not stale:
                    self.remote.track.push(frame)
        except MediaStreamError:
            pass
        finally:
            self.carry(None)
