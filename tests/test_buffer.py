"""sfu.buffer: the NACK packet cache and RFC 3550 receive statistics."""

from __future__ import annotations

import pytest

from sfu.buffer import PacketCache, ReceiveStats

P = pytest.param

# --- PacketCache ---------------------------------------------------------------------


def pkt(seq: int) -> bytes:
    return b"packet-%d" % seq


@pytest.mark.parametrize(
    "size, puts, present, absent",
    [
        P(8, [1, 2, 3], [1, 2, 3], [0, 4, 9], id="returns-what-was-put"),
        P(8, [], [], [0, 1, 7, 65535], id="empty-cache-has-nothing-even-seq-0"),
        P(4, [0, 1, 2, 3, 4], [1, 2, 3, 4], [0], id="newer-packet-evicts-its-slot"),
        P(4, [5], [5], [1, 9, 13, 65533], id="same-slot-other-seq-is-a-miss"),
        P(1024, [65534, 65535, 0, 1], [65534, 65535, 0, 1], [2, 65533], id="wraps-at-65535"),
        P(1024, list(range(65000, 65536)) + list(range(0, 600)), list(range(64, 600)) + [65535],
          list(range(65000, 65064)), id="keeps-last-1024-across-wrap"),
        P(1, [7, 8], [8], [7], id="size-1-keeps-only-the-last"),
        P(65536, [0, 65535], [0, 65535], [1], id="size-65536-no-collisions"),
    ],
)
def test_packet_cache(size, puts, present, absent):
    cache = PacketCache(size)
    for seq in puts:
        cache.put(seq, pkt(seq))
    for seq in present:
        assert cache.get(seq) == pkt(seq), seq
    for seq in absent:
        assert cache.get(seq) is None, seq


def test_packet_cache_put_same_seq_replaces():
    cache = PacketCache(8)
    cache.put(3, b"first")
    cache.put(3, b"retransmitted")
    assert cache.get(3) == b"retransmitted"


def test_packet_cache_clear_forgets_everything():
    cache = PacketCache(8)
    for seq in range(8):
        cache.put(seq, pkt(seq))
    cache.clear()
    assert [cache.get(seq) for seq in range(8)] == [None] * 8
    cache.put(2, b"after")
    assert cache.get(2) == b"after"


@pytest.mark.parametrize(
    "size",
    [P(3, id="3"), P(6, id="6"), P(1000, id="1000"), P(-4, id="negative")],
)
def test_packet_cache_rejects_size_not_power_of_two(size):
    with pytest.raises(ValueError):
        PacketCache(size)


def test_packet_cache_rejects_size_zero():
    with pytest.raises(ValueError):
        PacketCache(0)


# --- ReceiveStats: sequence tracking (RFC 3550 A.1, A.3) ------------------------------


def feed(stats: ReceiveStats, seqs, ts=0, arrival=0.0, size=100) -> None:
    for seq in seqs:
        stats.update(seq, ts, arrival, size)


@pytest.mark.parametrize(
    "seqs, extended_max, expected, lost",
    [
        P([10, 11, 12], 12, 3, 0, id="in-order"),
        P([10, 11, 14], 14, 5, 2, id="gap-of-two"),
        P([10, 12, 11, 13], 13, 4, 0, id="reordered-not-lost"),
        P([65534, 65535, 0, 1], 65536 + 1, 4, 0, id="wraps-at-65535"),
        P([65533, 65535, 2], 65536 + 2, 6, 3, id="loss-across-wrap"),
        P([65535, 1, 0], 65536 + 1, 3, 0, id="reordered-across-wrap"),
        P([65534, 0, 65535], 65536 + 0, 3, 0, id="late-packet-from-before-wrap-no-unwrap"),
        P([0, 65535], 0, 1, 0, id="packet-before-first-not-counted-as-wrap"),
        P([5, 6, 6, 7], 7, 3, 0, id="duplicate-not-loss"),
        P([0, 40000], 0, 1, 0, id="jump-beyond-half-circle-not-progress"),
        P([(1000 * i) & 0xFFFF for i in range(201)], 200000, 200001, 200001 - 201, id="three-wraps"),
        P([], 0, 0, 0, id="nothing-received"),
    ],
)
def test_sequence_tracking(seqs, extended_max, expected, lost):
    stats = ReceiveStats(1, 90000)
    feed(stats, seqs)
    assert stats.extended_max == extended_max
    assert stats.expected == expected
    assert stats.lost == lost
    assert stats.received == len(seqs)


@pytest.mark.parametrize(
    "batches, reports",
    [
        P([range(10)], [(0, 0)], id="no-loss"),
        P([[0, 1, 2, 5, 6, 7, 8, 9]], [(51, 2)], id="two-of-ten-lost"),
        P([[0, 1, 2, 5, 6, 7, 8, 9], range(10, 20)], [(51, 2), (0, 2)], id="clean-interval-after-loss"),
        P([range(10), [10, 15]], [(0, 0), (170, 4)], id="loss-only-in-second-interval"),
        P([range(5), []], [(0, 0), (0, 0)], id="empty-interval"),
        P([[0, 1, 3], [2, 4]], [(64, 1), (0, 0)], id="late-arrival-repairs-later-interval"),
        P([[0, 0, 0, 2]], [(0, 0)], id="duplicates-never-negative-fraction"),
        P([list(range(65530, 65536)) + [2, 3, 4, 5]], [(42, 2)], id="loss-across-wrap"),
        P([[65535], [99]], [(0, 0), (253, 99)], id="almost-all-lost-across-wrap"),
    ],
)
def test_fraction_lost_per_interval(batches, reports):
    stats = ReceiveStats(7, 90000)
    got = []
    for batch in batches:
        feed(stats, batch)
        block = stats.report_block(now=1.0)
        got.append((block.fraction_lost, block.packets_lost))
    assert got == reports


def test_report_block_identity_and_extended_highest():
    stats = ReceiveStats(0xABCDEF, 90000)
    feed(stats, [65534, 65535, 0, 1])
    block = stats.report_block(now=0.0)
    assert block.ssrc == 0xABCDEF
    assert block.highest_seq == 0x10001


@pytest.mark.parametrize(
    "sr_ntp, sr_arrival, now, lsr, dlsr",
    [
        P(0, 0.0, 5.0, 0, 0, id="no-sender-report-yet"),
        P(0x0123456789ABCDEF, 10.0, 10.5, 0x456789AB, 32768, id="middle-32-bits-and-half-second"),
        P(0x0123456789ABCDEF, 10.0, 12.0, 0x456789AB, 131072, id="two-seconds"),
        P(0xFFFFFFFFFFFFFFFF, 3.0, 3.0, 0xFFFFFFFF, 0, id="answered-at-once"),
        P(0x0000000100000000, 10.0, 9.0, 0x00010000, 0, id="clock-before-arrival-clamped"),
    ],
)
def test_report_block_lsr_dlsr(sr_ntp, sr_arrival, now, lsr, dlsr):
    stats = ReceiveStats(1, 90000)
    feed(stats, [1])
    stats.last_sr_ntp, stats.last_sr_arrival = sr_ntp, sr_arrival
    block = stats.report_block(now)
    assert (block.lsr, block.dlsr) == (lsr, dlsr)


def test_bytes_are_counted():
    stats = ReceiveStats(1, 90000)
    for size in (100, 1200, 3):
        stats.update(1, 0, 0.0, size)
    assert stats.bytes == 1303


# --- ReceiveStats: interarrival jitter (RFC 3550 A.8) ---------------------------------

RATE = 8000
STEP_S = 0.125  # exact in binary: arrival * RATE has no rounding
STEP_TS = 1000


def jitter_for(lateness, base_ts=100_000, base_seq=0):
    stats = ReceiveStats(1, RATE)
    for i, late in enumerate(lateness):
        stats.update((base_seq + i) & 0xFFFF, (base_ts + STEP_TS * i) & 0xFFFFFFFF, 10.0 + STEP_S * i + late, 100)
    return stats


@pytest.mark.parametrize(
    "lateness, jitter",
    [
        P([0, 0, 0, 0], 0.0, id="steady"),
        P([0.5, 0.5, 0.5, 0.5], 0.0, id="constant-delay-is-not-jitter"),
        P([0, 0.0625], 500 / 16, id="one-late-packet-500-ticks"),
        P([0.0625, 0], 500 / 16, id="early-counts-like-late"),
        P([0, 0.0625, 0], 500 / 16 + (500 - 500 / 16) / 16, id="late-then-on-time"),
        P([0], 0.0, id="single-packet"),
    ],
)
def test_jitter(lateness, jitter):
    stats = jitter_for(lateness)
    assert stats.jitter == pytest.approx(jitter)
    assert stats.report_block(now=20.0).jitter == int(jitter)


def test_jitter_converges_to_the_alternating_delay():
    stats = jitter_for([0.0625 * (i % 2) for i in range(400)])
    assert stats.jitter == pytest.approx(500, rel=1e-3)


def test_jitter_unaffected_by_timestamp_wrap():
    lateness = [0, 0.0625, 0, 0.0625, 0]
    wrapping = jitter_for(lateness, base_ts=0xFFFFFFFF - 1500)  # wraps between packets 1 and 2
    plain = jitter_for(lateness)
    assert wrapping.jitter == pytest.approx(plain.jitter)


@pytest.mark.parametrize("rate, size", [(15, 64), (50, 128), (180, 512), (1000, 2048)])
def test_cache_sized_by_time_keeps_two_seconds(rate, size):
    cache = PacketCache(4096, keep=2.0)
    for n in range(rate * 5):  # 5 s of packets at ``rate`` per second
        cache.put(n & 0xFFFF, bytes([n & 0xFF]), n / rate)
    assert cache.size == size
    newest = rate * 5 - 1
    assert all(cache.get(s) == bytes([s & 0xFF]) for s in range(newest - 2 * rate + 1, newest + 1))


def test_cache_by_time_stops_at_its_size():
    cache = PacketCache(128, keep=2.0)
    for n in range(1000):
        cache.put(n, b"x", n / 1000)
    assert cache.size == 128 and cache.get(999) == b"x" and cache.get(871) is None
