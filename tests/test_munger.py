"""sfu.munger.RtpMunger: one continuous output stream across source switches.

Scenarios are step tables in the manner of mediasoup's SeqManager tests:
``Sw`` re-anchors on a source packet, ``R`` rewrites one source packet and
states the output it must get (None: dropped), ``D`` skips a source packet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import pytest

from sfu.munger import RtpMunger

P = pytest.param
M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Sw:
    seq: int
    ts: int = 0
    now: float = 0.0
    clock_rate: int = 90000


@dataclass(frozen=True)
class R:
    seq: int
    out: Union[None, int, tuple[int, int]]  # None: dropped; int: output seq; tuple: (seq, ts)
    ts: int = 0
    now: float = 0.0


@dataclass(frozen=True)
class D:
    seq: int


def run(steps, first_seq: int = 1000, first_ts: int = 5000) -> RtpMunger:
    munger = RtpMunger(first_seq, first_ts)
    for index, step in enumerate(steps):
        if isinstance(step, Sw):
            munger.switch(step.seq, step.ts, step.now, step.clock_rate)
        elif isinstance(step, D):
            munger.drop(step.seq)
        else:
            got = munger.rewrite(step.seq, step.ts, step.now)
            if got is not None and isinstance(step.out, int):
                got = got[0]
            assert got == step.out, f"step {index}: {step}"
    return munger


@pytest.mark.parametrize(
    "first, steps",
    [
        P((1000, 5000), [Sw(50, 9000), R(50, (1000, 5000), 9000), R(51, (1001, 5000), 9000),
                         R(52, (1002, 8000), 12000)], id="first-switch-starts-at-first-seq-and-ts"),
        P((65534, 0), [Sw(10), R(10, 65534), R(11, 65535), R(12, 0), R(13, 1)], id="output-seq-wraps-at-65535"),
        P((1000, 5000), [Sw(65534), R(65534, 1000), R(65535, 1001), R(0, 1002), R(1, 1003)],
          id="source-seq-wraps-at-65535"),
        P((1000, 0xFFFFFFF0), [Sw(1, 1000), R(1, (1000, 0xFFFFFFF0), 1000), R(2, (1001, 0), 1016),
                               R(3, (1002, 4), 1020)], id="output-ts-wraps-at-2^32-1"),
        P((1000, 5000), [Sw(1, 0xFFFFFF00), R(1, (1000, 5000), 0xFFFFFF00), R(2, (1001, 5000 + 0x200), 0x100)],
          id="source-ts-wraps-at-2^32-1"),
        P((1000, 5000), [Sw(100), R(100, 1000), R(102, 1002), R(101, 1001), R(103, 1003)],
          id="out-of-order-keeps-its-place"),
        P((1000, 5000), [Sw(65535), R(65535, 1000), R(1, 1002), R(0, 1001), R(2, 1003)],
          id="out-of-order-across-source-wrap"),
        P((1000, 5000), [Sw(100), R(100, 1000), R(103, 1003), R(101, 1001), R(102, 1002), R(104, 1004)],
          id="late-packets-fill-a-hole"),
        P((1000, 5000), [Sw(100), R(100, 1000), R(101, 1001), R(102, 1002), R(101, 1001), R(103, 1003)],
          id="retransmission-gets-its-original-output"),
        P((1000, 5000), [Sw(100), R(99, None), R(100, 1000), R(98, None), R(101, 1001)],
          id="packets-older-than-first-switch-dropped"),
        P((1000, 5000), [Sw(0), R(65535, None), R(0, 1000), R(1, 1001)],
          id="packet-before-switch-at-0-dropped-across-wrap"),
        P((1000, 5000), [Sw(100), R(100, 1000), R(101, 1001), Sw(200, now=1.0), R(200, 1002, now=1.0),
                         R(150, None), R(101, None), R(199, None), R(201, 1003)],
          id="packets-older-than-later-switch-dropped"),
        P((1000, 5000), [Sw(100), R(100, 1000), R(101, 1001), Sw(40000, now=1.0), R(40000, 1002, now=1.0),
                         R(40001, 1003)], id="switch-to-other-source-keeps-seq-continuous"),
        P((1000, 5000), [Sw(100), R(100, 1000), R(101, 1001), Sw(500, now=1.0), R(500, 1002, now=1.0),
                         R(501, 1003)], id="resume-same-source-after-gap-closes-the-gap"),
        P((65535, 0), [Sw(10), R(10, 65535), Sw(99, now=1.0), R(99, 0, now=1.0), R(100, 1)],
          id="output-seq-wraps-across-a-switch"),
        P((1000, 5000), [Sw(100), R(100, 1000), D(101), R(102, 1001), D(103), D(104), R(105, 1002)],
          id="drop-closes-the-gap"),
        P((1000, 5000), [Sw(100), R(100, 1000), R(101, 1001), D(100), D(101), R(102, 1002)],
          id="drop-of-an-already-forwarded-seq-changes-nothing"),
        P((1000, 5000), [Sw(65534), R(65534, 1000), D(65535), D(0), R(1, 1001), R(2, 1002)],
          id="drop-across-source-wrap"),
        P((1000, 5000), [Sw(100), D(99), D(50), R(100, 1000), R(101, 1001)],
          id="drop-before-switch-ignored"),
        P((1000, 5000), [Sw(100), R(100, 1000), D(101), Sw(300, now=1.0), R(300, 1001, now=1.0)],
          id="switch-after-drop-continues-from-last-output"),
    ],
)
def test_sequence_scenarios(first, steps):
    run(steps, *first)


@pytest.mark.parametrize(
    "first, steps",
    [
        P((1000, 5000), [Sw(100, 1_000_000, now=1.0), R(100, (1000, 5000), 1_000_000, 1.0),
                         R(101, (1001, 8000), 1_003_000, 1.0), Sw(7000, 42, now=1.5),
                         R(7000, (1002, 53000), 42, 1.5), R(7001, (1003, 56000), 3042, 1.5)],
          id="switch-advances-ts-by-wall-clock-90khz"),
        P((1000, 5000), [Sw(100, 1_000_000, now=1.0), R(100, (1000, 5000), 1_000_000, 1.0),
                         R(101, (1001, 8000), 1_003_000, 1.0), Sw(7000, 42, now=1.0),
                         R(7000, (1002, 8001), 42, 1.0)], id="switch-at-same-instant-advances-ts-by-1"),
        P((1000, 5000), [Sw(100, 77, now=2.0, clock_rate=48000), R(100, (1000, 5000), 77, 2.0),
                         Sw(900, 123456, now=2.25, clock_rate=48000), R(900, (1001, 17000), 123456, 2.25)],
          id="switch-advances-ts-by-wall-clock-48khz"),
        P((1000, 0xFFFFFF00), [Sw(100, 9, now=2.0), R(100, (1000, 0xFFFFFF00), 9, 2.0),
                               Sw(500, 7, now=2.5), R(500, (1001, 45000 - 0x100), 7, 2.5)],
          id="ts-wraps-at-2^32-1-across-a-switch"),
        P((1000, 5000), [Sw(100, 1000, now=1.0), R(100, (1000, 5000), 1000, 1.0),
                         R(101, (1001, 8000), 4000, 1.25), R(102, (1002, 11000), 7000, 1.5),
                         R(101, (1001, 8000), 4000, 1.75), Sw(600, 0, now=2.0), R(600, (1003, 56000), 0, 2.0)],
          id="late-duplicate-does-not-move-the-switch-clock"),
        P((1000, 5000), [Sw(100, 1000, now=1.0), R(100, (1000, 5000), 1000, 1.0), R(102, (1002, 11000), 7000, 1.0),
                         R(101, (1001, 8000), 4000, 1.1)], id="out-of-order-ts-mapped-by-same-offset"),
    ],
)
def test_timestamp_scenarios(first, steps):
    run(steps, *first)




@pytest.mark.parametrize("start", [P(0, id="switch-at-0"), P(60000, id="switch-at-60000-crossing-wrap")])
def test_long_run_after_switch_keeps_forwarding(start):
    munger = RtpMunger(1000, 0)
    munger.switch(start, 0, 0.0, 90000)
    for i in range(0x8000 + 16):
        got = munger.rewrite((start + i) & 0xFFFF, 3000 * i, 0.0)
        assert got is not None and got[0] == (1000 + i) & 0xFFFF, f"packet {i} after the switch"


@pytest.mark.parametrize(
    "steps",
    [
        P([Sw(98), R(98, 1000), R(99, 1001), D(101), R(102, 1003), R(100, 1002)],
          id="reordered-packet-older-than-a-drop",
          ),
        P([Sw(100), R(100, 1000), D(102), R(103, 1002), R(101, 1001)],
          id="rtx-recovered-packet-after-a-drop",
          ),
        P([Sw(100), R(100, 1000), R(101, 1001), D(102), R(103, 1002), R(101, 1001)],
          id="duplicate-of-packet-before-a-drop",
          ),
    ],
)
def test_drop_with_reordering(steps):
    run(steps)


@pytest.mark.parametrize(
    "src_ts, first_ts",
    [
        P(0, 5000, id="plain"),
        P(0xFFFFFFF0, 5000, id="source-near-wrap"),
        P(100, 0xFFFFFFF0, id="output-near-wrap"),
    ],
)
def test_source_ts_inverts_the_mapping(src_ts, first_ts):
    munger = RtpMunger(1000, first_ts)
    munger.switch(1, src_ts, 0.0, 90000)
    for step in (0, 1, 0x20, 90000, 0x7FFFFFFF):
        source = (src_ts + step) & M32
        _, out_ts = munger.rewrite(1, source, 0.0)
        assert munger.source_ts(out_ts) == source


def test_nothing_started_until_first_switch():
    munger = RtpMunger(1000, 5000)
    assert not munger.started
    munger.switch(7, 0, 0.0, 90000)
    assert munger.started
