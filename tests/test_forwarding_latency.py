"""How benchmarks.forwarding measures latency: only packets sent inside the
window count (so the peers' own stats work at its edges delays nothing that
is counted), and late packets are lined up by time and by subscriber."""

from __future__ import annotations

import struct

from benchmarks.forwarding import late_packets
from benchmarks.peers import LATE_SLOT_NS, TIME_OFFSET, SubscriberPeer

MS = 1_000_000


def packet(seq: int, sent_ns: int) -> bytes:
    """An RTP packet as the publisher peer builds it: the send time at TIME_OFFSET."""
    payload = bytearray(40)
    payload[0] = 0x10
    struct.pack_into("!Q", payload, TIME_OFFSET, sent_ns)
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 1234) + bytes(payload)


async def test_only_packets_sent_in_the_window_count_toward_latency():
    peer = SubscriberPeer("ws://127.0.0.1:9/ws", "room")
    now = 10_000 * 1_000_000_000
    peer._on_rtp(packet(1, now - 300 * MS))  # before any window: counted, then forgotten
    peer.measure(now, now + 1_000 * MS)
    peer._on_rtp(packet(2, now - 300 * MS))  # sent before the window, arrives in it
    peer._on_rtp(packet(3, 0))  # sent long before: would be the worst, and is not counted
    stats = peer.stats()
    assert stats["latency_count"] == 0 and stats["late_slots"] == {}
    assert stats["received"] == 3  # loss counting is not windowed

    peer.measured_from = 0  # a packet sent "in" the window (CLOCK_MONOTONIC is shared)
    peer._on_rtp(packet(4, 1))
    stats = peer.stats()
    assert stats["latency_count"] == 1
    assert sum(stats["late_slots"].values()) == 1  # seconds late: past LATE_US
    await peer.close()


def test_a_stall_of_every_subscriber_is_told_from_one_left_waiting():
    start = 100.0  # the window's start, seconds of the monotonic clock
    slot = int(start * 1e9) // LATE_SLOT_NS
    stalled_server = [{str(slot + 5): 20, str(slot + 6): 10} for _ in range(4)]
    found = late_packets(stalled_server, 4000, start)
    assert found["late_pct"] == 3.0
    assert found["late_together_pct"] == 100.0
    assert found["late_peers"] == 4 and found["late_spans"] == 1
    assert found["late_at_s"] == [0.0]  # the 100 ms period it fell in

    one_waiting = [{str(slot + 100): 7}, {}, {}, {}]
    found = late_packets(one_waiting, 4000, start)
    assert found["late_together_pct"] == 0.0
    assert found["late_peers"] == 1 and found["late_top_peers"] == [7, 0, 0]
    assert found["late_at_s"] == [1.0]

    nothing = late_packets([{}, {}], 2000, start)
    assert nothing["late_pct"] == 0.0 and nothing["late_together_pct"] is None
