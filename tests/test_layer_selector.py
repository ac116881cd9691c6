"""Layer selection: subscriber wishes in, layer out (tables)."""

import pytest

from sfu.layer_selector import OFF, LayerInfo, TrackSettings, select_layer, temporal_limit, wanted_layer

P = pytest.param
LADDER = [LayerInfo(True, 320, 180), LayerInfo(True, 640, 360), LayerInfo(True, 1280, 720)]
UNMEASURED = [LayerInfo(True), LayerInfo(True), LayerInfo(True)]


@pytest.mark.parametrize(
    "settings, layers, wanted",
    [
        P(TrackSettings(), LADDER, 2, id="no-wish-gets-top"),
        P(TrackSettings(quality="low"), LADDER, 0, id="low"),
        P(TrackSettings(quality="medium"), LADDER, 1, id="medium"),
        P(TrackSettings(quality="high"), LADDER, 2, id="high"),
        P(TrackSettings(paused=True), LADDER, OFF, id="paused"),
        P(TrackSettings(max_width=300, max_height=170), LADDER, 0, id="tile-fits-low"),
        P(TrackSettings(max_width=321, max_height=100), LADDER, 1, id="tile-just-over-low"),
        P(TrackSettings(max_width=1920, max_height=1080), LADDER, 2, id="tile-bigger-than-top"),
        P(TrackSettings(max_width=0, max_height=0), LADDER, 0, id="zero-size-tile"),
        P(TrackSettings(quality="high", max_width=200, max_height=100), LADDER, 0, id="size-limits-quality"),
        P(TrackSettings(max_width=600, max_height=300), UNMEASURED, 1, id="sizes-unknown-guess-ladder"),
        P(TrackSettings(quality="high"), [LayerInfo(True, 640, 480)], 0, id="single-layer"),
        P(TrackSettings(quality="medium"), LADDER[:2], 1, id="two-layers-medium-is-top"),
    ],
)
def test_wanted_layer(settings, layers, wanted):
    assert wanted_layer(settings, layers) == wanted


def flowing(*flags):
    return [LayerInfo(flag) for flag in flags]


@pytest.mark.parametrize(
    "wanted, cap, current, layers, chosen",
    [
        P(2, 2, OFF, flowing(True, True, True), 2, id="all-flowing"),
        P(2, 0, 2, flowing(True, True, True), 0, id="bandwidth-cap"),
        P(2, 2, 2, flowing(True, True, False), 1, id="top-stopped-fall-to-next"),
        P(2, 2, 2, flowing(True, False, False), 0, id="only-low-flows"),
        P(0, 2, 0, flowing(False, True, True), 1, id="low-stopped-fallback-up"),
        P(OFF, 2, 1, flowing(True, True, True), OFF, id="paused"),
        P(2, OFF, 1, flowing(True, True, True), OFF, id="no-bandwidth"),
        P(1, 2, 1, flowing(False, False, False), 1, id="nothing-flows-keep-current"),
        P(1, 2, OFF, flowing(False, False, False), 1, id="nothing-flows-yet-aim-wanted"),
    ],
)
def test_select_layer(wanted, cap, current, layers, chosen):
    assert select_layer(wanted, cap, current, layers) == chosen


@pytest.mark.parametrize(
    "max_fps, limit",
    [P(None, 2, id="unlimited"), P(30, 2, id="full"), P(15, 1, id="half"), P(10, 0, id="third"),
     P(7, 0, id="quarter"), P(0, 2, id="zero-means-unset")],
)
def test_temporal_limit(max_fps, limit):
    assert temporal_limit(max_fps) == limit
