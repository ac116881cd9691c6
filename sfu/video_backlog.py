"""Video that waits while audio goes first (single-port mode).

In a big room every packet fans out to many subscribers: at 150, one packet
of a speaker's microphone or of the dominant speaker's camera is 149 copies,
a few milliseconds of the loop. When the loop falls behind (a burst of
signaling, a change of speakers that refills every subscriber's slots), the
shared socket holds a few hundred milliseconds of both, and read in arrival
order, the audio waits behind the video until the whole backlog is drained.

So the shared socket's reader (sfu/udp_mux.py) hands audio, RTCP, STUN and
DTLS on as it reads them, and queues the video here; the queue is served
oldest first, at most ``BUDGET`` per loop turn, so that the audio arriving
meanwhile waits at most that long. Video that waited longer than the
socket's stale age is dropped, as in the socket (what a late loop cannot
forward in time is dropped, not delayed: NACKs, key frames and the load
manager recover from that). Which datagrams are video, the endpoint says
(``MuxEndpoint.video_types``: the payload types its peer connection
negotiated for video, set by sfu/transport.py).
"""

from __future__ import annotations

import collections
import time
from typing import Callable

#: Nanoseconds of the loop's CPU time spent on queued video per loop turn at most.
BUDGET = 10_000_000
#: Datagrams the queue holds at most (≈ 5 MB of 1.2 kB video); the oldest go first.
LIMIT = 4096


class VideoBacklog:
    """Video datagrams waiting for the loop, in arrival order."""

    def __init__(self, on_drop: Callable[[str], None], on_wait: Callable[[int], None]) -> None:
        self._queue: collections.deque = collections.deque()
        self._on_drop = on_drop  # a datagram dropped: "stale" or "backlog_full"
        self._on_wait = on_wait  # ns the oldest datagram handed on had waited since it arrived

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, endpoint, data: bytes, addr: tuple, arrival: int) -> None:
        """Queue one datagram for ``endpoint`` (a MuxEndpoint); ``arrival``:
        when the kernel got it (ns, CLOCK_REALTIME)."""
        if len(self._queue) >= LIMIT:
            self._queue.popleft()
            self._on_drop("backlog_full")
        self._queue.append((endpoint, data, addr, arrival))

    def serve(self, stale_after: int, budget: int = BUDGET) -> bool:
        """Hand queued datagrams on, oldest first, for about ``budget`` ns;
        drop those older than ``stale_after`` ns. True if some still wait."""
        queue = self._queue
        if not queue:
            return False
        now = time.time_ns()
        self._on_wait(now - queue[0][3])
        # The budget is CPU time: a preempted process still serves its share.
        # Reading it is a system call, so the wall clock (never behind it) is
        # watched, and the CPU clock read only once the wall clock has run out.
        started = time.thread_time_ns()
        wall_deadline = time.monotonic_ns() + budget
        oldest = now - stale_after
        while queue:
            endpoint, data, addr, arrival = queue.popleft()
            if arrival < oldest:
                self._on_drop("stale")
                continue
            if not endpoint.closed:
                endpoint.receiver.datagram_received(data, addr)
            if time.monotonic_ns() >= wall_deadline:
                used = time.thread_time_ns() - started
                if used >= budget:
                    return bool(queue)
                wall_deadline = time.monotonic_ns() + budget - used
        return False

    def clear(self) -> None:
        self._queue.clear()
