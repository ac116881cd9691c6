"""The downlink estimate: a subscriber's feedback in, bits per second out (tables).

Each row is what a client sent, in order, with the time it arrived (seconds);
then what the estimate is at the given time.
"""

import pytest

from sfu.downlink_estimate import DownlinkEstimate

P = pytest.param


def remb(t, bitrate, ssrcs=(1,)):
    return lambda e: e.on_remb(ssrcs, bitrate, t)


def rr(*video):
    """A receiver report: (fraction lost in 1/256, bitrate sent) per flowing video track."""
    return lambda e: e.on_receiver_report(video)


def wish(t):
    return lambda e: e.wished_more(t)


def replay(events) -> DownlinkEstimate:
    estimate = DownlinkEstimate()
    for event in events:
        event(estimate)
    return estimate


@pytest.mark.parametrize(
    "events, now, expected",
    [
        P([], 0.0, None, id="no-feedback-no-limit"),
        # REMB
        P([remb(0, 1_000_000)], 0.0, 1_000_000, id="first-remb-binds"),
        P([remb(0, 600_000), remb(1, 600_000), remb(2, 600_000)], 2.0, 600_000, id="settled-remb-binds"),
        P([remb(0, 500_000), remb(1, 600_000)], 1.0, None, id="climbing-remb-does-not-bind"),
        P([remb(0, 500_000), remb(1, 510_000)], 1.0, 510_000, id="climb-under-3pc-binds"),
        P([remb(0, 500_000), remb(1.5, 600_000)], 1.5, 600_000, id="climb-measured-over-1.2s-only"),
        P([remb(0, 1_000_000), remb(1, 850_000)], 1.0, 850_000, id="falling-remb-binds"),
        # a new wish: the client's REMB cannot know yet, for 4 s
        P([remb(0, 600_000), wish(0), remb(1, 600_000)], 1.0, None, id="wish-holds-settled-remb"),
        P([remb(0, 600_000), wish(0), remb(1, 600_000)], 4.0, 600_000, id="wish-grace-ends-after-4s"),
        P([remb(0, 1_000_000), wish(0.5), remb(1, 850_000)], 1.0, 850_000, id="falling-binds-despite-wish"),
        P([remb(0, 1_000_000), wish(2), remb(2.5, 850_000)], 2.5, None, id="peak-forgotten-after-2s"),
        # receiver report loss
        P([rr((64, 1_000_000))], 0.0, 875_000, id="25pc-loss-halves-it-off-what-is-sent"),
        P([rr((26, 500_000), (64, 500_000))], 0.0, 875_000, id="worst-loss-of-the-sum-sent"),
        P([rr((25, 1_000_000))], 0.0, None, id="under-10pc-loss-no-limit"),
        P([rr((26, 1_000_000))], 0.0, pytest.approx(949_219, abs=1), id="just-over-10pc-loss"),
        P([rr((64, 1_000_000)), rr((10, 1_000_000))], 0.0, 875_000, id="moderate-loss-holds"),
        P([rr((64, 1_000_000)), rr((0, 1_000_000))], 0.0, pytest.approx(945_000), id="clean-report-recovers-8pc"),
        P([rr((64, 1_000_000)), rr()], 0.0, 875_000, id="no-video-sent-no-change"),
        P([rr((64, 1_000_000))] + [rr((0, 1_000_000))] * 10, 0.0, pytest.approx(875_000 * 1.08**10),
          id="ten-clean-reports-still-limit"),
        P([rr((64, 1_000_000))] + [rr((0, 1_000_000))] * 11, 0.0, None, id="gone-above-twice-what-is-sent"),
        # both
        P([remb(0, 800_000), rr((64, 1_000_000))], 0.0, 800_000, id="remb-below-loss-estimate"),
        P([remb(0, 1_000_000), rr((64, 1_000_000))], 0.0, 875_000, id="loss-estimate-below-remb"),
        P([remb(0, 500_000), remb(1, 600_000), rr((64, 1_000_000))], 1.0, 875_000, id="loss-binds-while-remb-climbs"),
    ],
)
def test_estimate(events, now, expected):
    assert replay(events).estimate(now) == expected


@pytest.mark.parametrize(
    "events, total",
    [
        P([remb(0, 300_000, (1,)), remb(0, 200_000, (2,))], 500_000, id="one-remb-per-mline-summed"),
        P([remb(0, 300_000, (1,)), remb(0, 200_000, (2,)), remb(0.5, 400_000, (1, 2))], 400_000,
          id="shared-ssrc-supersedes"),
        P([remb(0, 300_000, (1,)), remb(2.0, 200_000, (2,))], 500_000, id="part-2s-old-still-counts"),
        P([remb(0, 300_000, (1,)), remb(2.5, 200_000, (2,))], 200_000, id="stale-part-dropped"),
    ],
)
def test_remb_total(events, total):
    assert replay(events).remb == total


def test_per_mline_rembs_read_as_climbing():
    """Today's behaviour, pinned: the climb test compares the summed REMB
    with one earlier part, so aiortc's per-m-line REMBs never bind."""
    assert replay([remb(0, 300_000, (1,)), remb(0, 200_000, (2,))]).estimate(0.0) is None


@pytest.mark.parametrize(
    "previous, bitrate, news",
    [
        P(None, 1_000_000, True, id="first-remb"),
        P(1_000_000, 850_000, False, id="15pc-lower"),
        P(1_000_000, 800_000, False, id="20pc-lower"),
        P(1_000_000, 790_000, True, id="over-20pc-lower"),
        P(1_000_000, 2_000_000, False, id="higher"),
    ],
)
def test_remb_is_news(previous, bitrate, news):
    """A REMB that says the link got much worse is acted on at once, not at the next tick."""
    estimate = replay([remb(0, previous)] if previous else [])
    assert estimate.on_remb((1,), bitrate, 0.5) is news
