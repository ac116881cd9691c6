"""sfu.send_history.SendHistory: what went out under which number, for NACKs."""

from __future__ import annotations

import pytest

from sfu.send_history import Sent, SendHistory

P = pytest.param


@pytest.mark.parametrize(
    "size, recorded, looked_up, found",
    [
        P(8, [(10, 500, 0, 900)], 10, Sent(10, 500, 0, 900, None), id="found-by-its-number"),
        P(8, [(10, 500, 0, 900)], 11, None, id="never-sent"),
        P(8, [(10, 500, 0, 900), (18, 508, 1, 999)], 10, None, id="overwritten-by-the-number-8-later"),
        P(8, [(10, 500, 0, 900), (18, 508, 1, 999)], 18, Sent(18, 508, 1, 999, None), id="the-later-one-is-found"),
        P(8, [(65535, 7, 2, 1)], 65535, Sent(65535, 7, 2, 1, None), id="top-of-the-number-space"),
        P(8, [(65535, 7, 2, 1), (0, 8, 2, 2)], 0, Sent(0, 8, 2, 2, None), id="across-the-wrap"),
        P(8, [(65535, 7, 2, 1), (0, 8, 2, 2)], 65535, Sent(65535, 7, 2, 1, None), id="before-the-wrap-still-there"),
        P(2048, [(3, 3, 0, 0)], 3 + 2048, None, id="same-slot-other-number"),
    ],
)
def test_lookup(size, recorded, looked_up, found):
    history = SendHistory(size)
    for entry in recorded:
        history.record(*entry)
    assert history.lookup(looked_up) == found


def test_the_codec_id_offsets_a_packet_went_out_with_come_back():
    history = SendHistory()
    history.record(5, 105, 1, 4500, (3, 1))
    history.record(6, 106, 1, 4500, (7, 2))  # a switch moved the offsets
    assert history.lookup(5).ids == (3, 1) and history.lookup(6).ids == (7, 2)


def test_clear_forgets_everything():
    history = SendHistory(16)
    for seq in range(16):
        history.record(seq, seq + 1000, 0, seq * 3000)
    history.clear()
    assert all(history.lookup(seq) is None for seq in range(16))


@pytest.mark.parametrize("size", [0, 3, 1000])
def test_the_size_must_be_a_power_of_two(size):
    with pytest.raises(ValueError):
        SendHistory(size)
