"""Video waits while audio goes first (sfu/video_backlog.py): the queue's
rules, and the shared socket handing audio on before video that arrived
earlier when the loop is behind."""

from __future__ import annotations

import socket
import time

from sfu import udp_mux
from sfu.video_backlog import LIMIT, VideoBacklog

from .waiting import eventually

VP8, OPUS = 96, 111


class Endpoint:
    """A connection's end of the shared socket, keeping what it is handed."""

    def __init__(self, work_s: float = 0.0) -> None:
        self.receiver = self
        self.closed = False
        self.datagrams: list[bytes] = []
        self._work_s = work_s

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.datagrams.append(data)
        end = time.thread_time() + self._work_s  # CPU, as forwarding to many costs
        while time.thread_time() < end:
            pass


def packet(payload_type: int, seq: int) -> bytes:
    return bytes([0x80, payload_type]) + seq.to_bytes(2, "big") + bytes(8) + bytes(200)


def seqs(datagrams: list[bytes], payload_type: int) -> list[int]:
    return [int.from_bytes(d[2:4], "big") for d in datagrams if d[1] & 0x7F == payload_type]


def backlog() -> tuple[VideoBacklog, list[str], list[int]]:
    drops: list[str] = []
    waits: list[int] = []
    return VideoBacklog(drops.append, waits.append), drops, waits


def test_served_oldest_first_for_a_bounded_time():
    queue, drops, waits = backlog()
    endpoint = Endpoint(work_s=0.002)
    now = time.time_ns()
    for seq in range(20):
        queue.add(endpoint, packet(VP8, seq), ("127.0.0.1", 1), now)
    assert queue.serve(stale_after=10**10, budget=5_000_000)  # some still wait
    served = seqs(endpoint.datagrams, VP8)
    assert served == list(range(len(served))) and 1 <= len(served) <= 3
    assert len(queue) == 20 - len(served)
    assert drops == [] and len(waits) == 1
    for _ in range(20):
        if not queue.serve(stale_after=10**10, budget=5_000_000):
            break
    assert seqs(endpoint.datagrams, VP8) == list(range(20)) and len(queue) == 0


def test_video_that_waited_too_long_is_dropped_not_delayed():
    queue, drops, waits = backlog()
    endpoint = Endpoint()
    now = time.time_ns()
    queue.add(endpoint, packet(VP8, 1), ("127.0.0.1", 1), now - 400_000_000)
    queue.add(endpoint, packet(VP8, 2), ("127.0.0.1", 1), now)
    queue.serve(stale_after=250_000_000)
    assert seqs(endpoint.datagrams, VP8) == [2]
    assert drops == ["stale"]
    assert waits[0] >= 400_000_000  # the load manager sees how late video is


def test_the_queue_is_bounded_and_a_closed_connections_video_is_skipped():
    queue, drops, _ = backlog()
    gone, kept = Endpoint(), Endpoint()
    now = time.time_ns()
    for seq in range(LIMIT + 3):
        queue.add(gone if seq % 2 else kept, packet(VP8, seq), ("127.0.0.1", 1), now)
    assert len(queue) == LIMIT and drops == ["backlog_full"] * 3
    gone.closed = True
    queue.serve(stale_after=10**10, budget=10**10)
    assert gone.datagrams == []
    assert seqs(kept.datagrams, VP8) == [s for s in range(3, LIMIT + 3) if s % 2 == 0]


def test_video_types_mark_rtp_of_those_payload_types_only():
    table = udp_mux.video_types([VP8, 97, 80])  # 80 would shadow RTCP's 208: never video
    assert table[VP8] and table[VP8 | 0x80] and table[97 | 0x80]  # marker bit set or not
    assert not table[OPUS] and not table[80] and not any(table[192:224])


async def test_audio_behind_a_video_backlog_is_handed_on_first():
    """The loop was late: 30 video packets, then 5 audio ones, wait in the
    shared socket. The reader hands the audio on at once and the video a
    bounded slice per loop turn, oldest first; nothing is lost."""
    mux = udp_mux.UdpMux.bind("127.0.0.1", 0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.bind(("127.0.0.1", 0))
        endpoint = mux.endpoint("abcd", Endpoint(work_s=0.002)).receiver
        mux.ufrags["abcd"].confirm(sender.getsockname())
        mux.ufrags["abcd"].video_types = udp_mux.video_types([VP8])
        mux.loop.remove_reader(mux.sock.fileno())  # the loop is busy elsewhere
        for seq in range(30):
            sender.sendto(packet(VP8, seq), mux.sockname)
        for seq in range(5):
            sender.sendto(packet(OPUS, seq), mux.sockname)
        time.sleep(0.05)
        mux.loop.add_reader(mux.sock.fileno(), mux._readable)
        await eventually(lambda: len(endpoint.datagrams) == 35, message=lambda: f"got {len(endpoint.datagrams)}")
        order = [d[1] & 0x7F for d in endpoint.datagrams]
        assert order[:5] == [OPUS] * 5, order
        assert seqs(endpoint.datagrams, VP8) == list(range(30))
    finally:
        sender.close()
        mux.close()
