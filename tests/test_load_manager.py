"""Graceful overload (sfu/loop_load.py, sfu/load_manager.py): the loop's
load as measured, the levels the load manager steps through, what each
level sheds, and, with real aiortc peers, that a forced overload takes a
non-speaker's video away while audio and the speaker's video keep flowing."""

from __future__ import annotations

import asyncio
import time
import typing
from types import SimpleNamespace

import pytest

from sfu import events
from sfu.config import LoadConfig
from sfu.lastn import rank
from sfu.load_manager import LEVELS, NORMAL, LoadManager
from sfu.loop_load import LoopLoad
from signaling.app import LOAD

from .conftest import client_factory
from .frames import count_frames
from .media import PatternVideoTrack, ToneAudioTrack
from .waiting import eventually

P = pytest.param

# --- the levels: what each one sheds ----------------------------------------------


def track(participant_id: str = "PA_b", kind: str = "video", source: str = "camera"):
    return SimpleNamespace(participant_id=participant_id, kind=kind, source=source)


def test_level_names_are_the_events_shed_names():
    assert tuple(shed.name for shed in LEVELS) == typing.get_args(events.ShedName)
    assert [shed.level for shed in LEVELS] == list(range(len(LEVELS)))


@pytest.mark.parametrize(
    "level, what, layers, cap",
    [
        P(0, track(), 3, 2, id="none: a camera keeps its top layer"),
        P(1, track(), 3, 1, id="top_layer_off: one layer lower"),
        P(1, track(), 2, 0, id="top_layer_off: of two layers, the lowest"),
        P(1, track(), 1, 0, id="top_layer_off: a single layer stays"),
        P(2, track(), 3, 0, id="lowest_layer_only"),
        P(4, track(), 3, 0, id="speakers_only: cameras still capped"),
        P(4, track(kind="audio"), 1, 0, id="never audio"),
        P(4, track(participant_id="PA_speaker"), 3, 2, id="not the speaker's camera"),
        P(5, track(participant_id="PA_speaker"), 3, 1, id="speakers_top_layer_off: the speaker's one lower"),
        P(5, track(participant_id="PA_speaker"), 1, 0, id="speakers_top_layer_off: a single layer stays"),
        P(5, track(), 3, 0, id="speakers_top_layer_off: the others' still at the lowest"),
        P(5, track(source="screen_share"), 3, 2, id="never a screen share, at the last level either"),
        P(4, track(source="screen_share"), 1, 0, id="never a screen share"),
        P(2, track(source="screen_share"), 2, 1, id="never a simulcast screen share"),
    ],
)
def test_layer_cap(level, what, layers, cap):
    assert LEVELS[level].layer_cap(what, {"PA_speaker"}, layers) == cap


@pytest.mark.parametrize(
    "level, last_n, n",
    [
        P(0, 25, 25, id="none"),
        P(2, 25, 25, id="layers only"),
        P(3, 25, 12, id="halved"),
        P(3, 4, 3, id="halved, at least 3"),
        P(3, 2, 2, id="never above the setting"),
        P(4, 25, 0, id="speakers only"),
        P(5, 25, 0, id="speakers only, lower"),
    ],
)
def test_last_n(level, last_n, n):
    assert LEVELS[level].last_n(last_n) == n


@pytest.mark.parametrize(
    "pins, first, n, chosen",
    [
        P([], [], 2, ["c", "a"], id="no shedding: recent speakers, then longest present"),
        P(["d"], ["b"], 2, ["b", "d"], id="the speaker first, then pins"),
        P(["a", "c", "d"], ["b"], 1, ["b"], id="the speaker even when pins fill n"),
        P(["a"], ["b", "c"], 0, ["b", "c"], id="speakers only: n of 0"),
        P([], ["me", "gone"], 0, [], id="never yourself, never the gone"),
    ],
)
def test_rank_keeps_the_spared_first(pins, first, n, chosen):
    assert rank(["a", "b", "c", "d", "me"], ["c"], pins, n, "me", first=first) == chosen


# --- the load manager: when it steps ---------------------------------------------------

CONFIG = LoadConfig(busy_high=0.85, busy_low=0.6, lag_high_ms=50, lag_low_ms=20, step_interval=2, hold=10)
HOT, CALM, MIDDLE = (0.95, 0), (0.3, 0), (0.7, 0)
LAGGING = (0.3, 80)
FAR_BEHIND = (1.0, 200)  # lag 4 × lag_high_ms


def levels(script, config=CONFIG, would_shed=lambda shed: True) -> list[tuple[float, str]]:
    """Feed (seconds, [busy, lag ms] per 0.5 s sample) parts in turn; the level
    name after each change, with its time."""
    applied = []
    manager = LoadManager(config, lambda shed: applied.append((now, shed.name)), would_shed=would_shed)
    now = 0.0
    for seconds, (busy, lag_ms) in script:
        for _ in range(int(seconds / 0.5)):
            manager.update(busy, lag_ms / 1000, now)
            now += 0.5
    return applied


@pytest.mark.parametrize(
    "script, expected",
    [
        P([(10, HOT)], [(0.0, "top_layer_off"), (2.0, "lowest_layer_only"), (4.0, "last_n_halved"),
                        (6.0, "speakers_only"), (8.0, "speakers_top_layer_off")],
          id="over budget: one step per step_interval, up to the last"),
        P([(1, LAGGING)], [(0.0, "top_layer_off")], id="lag alone is over budget"),
        P([(2.5, FAR_BEHIND)], [(0.0, "top_layer_off"), (0.5, "lowest_layer_only"), (1.0, "last_n_halved"),
                                (1.5, "speakers_only"), (2.0, "speakers_top_layer_off")],
          id="far behind: steps four times as often"),
        P([(1, FAR_BEHIND), (4, HOT)], [(0.0, "top_layer_off"), (0.5, "lowest_layer_only"),
                                        (2.5, "last_n_halved"), (4.5, "speakers_only")],
          id="less behind: the usual pace again"),
        P([(30, MIDDLE)], [], id="between the thresholds: nothing"),
        P([(0.5, HOT), (30, MIDDLE)], [(0.0, "top_layer_off")], id="between the thresholds: the level holds"),
        P([(4.5, HOT), (40, CALM)],
          [(0.0, "top_layer_off"), (2.0, "lowest_layer_only"), (4.0, "last_n_halved"),
           (14.5, "lowest_layer_only"), (24.5, "top_layer_off"), (34.5, "none")],
          id="calm: back one level per hold, in reverse order"),
        P([(0.5, HOT), (9.5, CALM), (0.5, MIDDLE), (10.5, CALM)],
          [(0.0, "top_layer_off"), (20.5, "none")], id="a warmer sample restarts the hold"),
        P([(0.5, HOT), (9, CALM), (0.5, HOT)],
          [(0.0, "top_layer_off"), (9.5, "lowest_layer_only")], id="load back before the hold: up again"),
    ],
)
def test_steps(script, expected):
    assert levels(script) == expected


@pytest.mark.parametrize(
    "sheds, expected",
    [
        P({"last_n_halved", "speakers_only"}, [(0.0, "last_n_halved"), (2.0, "speakers_only")],
          id="small tiles only: the layer caps are skipped"),
        P({"top_layer_off", "speakers_only"}, [(0.0, "top_layer_off"), (2.0, "speakers_only")],
          id="a level between that takes nothing: skipped"),
        P(set(), [], id="nothing to take off: no step"),
    ],
)
def test_a_step_up_skips_levels_that_take_nothing(sheds, expected):
    assert levels([(10, HOT)], would_shed=lambda shed: shed.name in sheds) == expected


def test_disabled_never_sheds():
    assert levels([(10, HOT)], LoadConfig(enabled=False)) == []


def test_steps_are_counted_and_the_level_kept():
    manager = LoadManager(CONFIG, lambda shed: None)
    for now in (0, 2, 4):
        manager.update(*HOT, now)
    assert (manager.level, manager.shed.name, manager.steps) == (3, "last_n_halved", {"up": 3, "down": 0})


# --- the measurer ---------------------------------------------------------------


def test_busy_is_cpu_over_wall_time_and_lag_the_worst_probe_both_smoothed():
    load = LoopLoad()
    assert load.sample(cpu=10.0, wall=100.0) == (0.0, 0.0)  # the first reading only starts
    load.probe(0.004)
    load.probe(0.030)
    load.probe(-0.001)  # early: no lag
    busy, lag = load.sample(cpu=10.5, wall=100.5)
    assert busy == pytest.approx(0.3 * 1.0) and lag == pytest.approx(0.3 * 0.030)
    busy, lag = load.sample(cpu=10.5, wall=101.0)  # idle, no probe late
    assert busy == pytest.approx(0.7 * 0.3) and lag == pytest.approx(0.7 * 0.3 * 0.030)
    assert load.last_lag == 0.0 and sum(load.lag_histogram.counts) == 3


class ForcedCpu:
    """A loop-thread CPU clock that runs at ``busy`` times the wall clock."""

    def __init__(self) -> None:
        self.busy = 0.0
        self._cpu = time.thread_time()
        self._wall = time.monotonic()

    def __call__(self) -> float:
        now = time.monotonic()
        self._cpu += (now - self._wall) * self.busy
        self._wall = now
        return self._cpu


async def test_samples_the_running_loop():
    samples = []
    cpu = ForcedCpu()
    cpu.busy = 1.0
    load = LoopLoad(cpu_clock=cpu, probe=0.01, sample=0.05)
    load.start(lambda busy, lag, now: samples.append(busy))
    try:
        await eventually(lambda: len(samples) >= 3, timeout=10, interval=0.01)
    finally:
        load.stop()
    assert samples == sorted(samples) and 0 < samples[-1] <= 1  # rising towards 1.0
    assert sum(load.lag_histogram.counts) >= 3


# --- through the server, with real aiortc peers ---------------------------------------

SPEAKERS_ONLY = next(shed.level for shed in LEVELS if shed.name == "speakers_only")
#: Shed on busy alone (a test's loop also runs its clients: its lag is theirs),
#: quickly, to keep the test short.
FAST = {"load": {"lag_high_ms": 60_000, "lag_low_ms": 60_000, "step_interval": 0.1, "hold": 0.5}}


@pytest.mark.slow
async def test_overload_pauses_a_non_speakers_video_and_gives_it_back(make_server):
    server = await make_server(sfu=FAST)
    cpu = ForcedCpu()
    manager = server.app[LOAD]
    manager.measure.cpu_clock = cpu
    async with client_factory(server) as connect:
        speaker, silent, viewer = await connect(), await connect(), await connect()
        await speaker.join("load", "speaker")
        await speaker.publish([ToneAudioTrack(), PatternVideoTrack(160, 120)])
        await silent.join("load", "silent")
        await silent.publish([ToneAudioTrack(amplitude=0), PatternVideoTrack(160, 120)])
        await viewer.join("load", "viewer")
        received = {(t.participant_id, t.track.kind): t.track for t in await viewer.wait_tracks(4)}
        room = server.rooms.rooms["load"]
        await eventually(lambda: room.speakers.dominant == speaker.participant_id, timeout=10,
                         message="the tone never made its publisher the dominant speaker")

        async def frames() -> dict:
            counted = await asyncio.gather(*(count_frames(t, 1.0) for t in received.values()))
            return {key: len(f) for key, f in zip(received, counted)}

        async def settles(video_of_silent: bool) -> dict:
            """Frames per track once the silent one's video is (not) flowing."""
            deadline = time.monotonic() + 20
            while True:
                counts = await frames()
                flowing = counts[silent.participant_id, "video"] > 5
                if flowing == video_of_silent and min(counts[k] for k in counts if k[0] == speaker.participant_id) > 5 \
                        or time.monotonic() > deadline:
                    return counts

        def everything_but(counts, gone) -> bool:
            return all(count > 5 for key, count in counts.items() if key != gone)

        assert everything_but(await settles(True), None)

        cpu.busy = 1.0  # the loop is full
        await eventually(lambda: manager.level == SPEAKERS_ONLY, timeout=30,
                         message="the load manager never reached speakers_only")
        shed = await settles(False)
        assert shed[silent.participant_id, "video"] == 0, shed
        assert everything_but(shed, (silent.participant_id, "video")), shed  # audio, the speaker's video
        assert {"type": "server_load", "level": 4, "shed": "speakers_only"} in viewer.events

        latecomer = await connect()
        await latecomer.join("load", "latecomer")
        await eventually(lambda: any(e["type"] == "server_load" for e in latecomer.events), timeout=5,
                         message="a newcomer was not told the load level")

        cpu.busy = 0.0  # load falls
        await eventually(lambda: manager.level == 0, timeout=30, message="the video was never given back")
        assert everything_but(await settles(True), None)
        names = [e["shed"] for e in viewer.events if e["type"] == "server_load"]
        # one layer per camera and 2 cameras for a last-N of 9: only speakers_only
        # takes anything off, so the way up skips the rest (and stops there:
        # the speaker's one layer stays); the way down is step by step
        assert names == ["speakers_only"] + [shed.name for shed in reversed(LEVELS[:SPEAKERS_ONLY])]
        assert manager.steps["up"] == 1
        assert room.shed is NORMAL
