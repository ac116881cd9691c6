"""Connection quality: judged from loss, RTT and jitter in both directions,
announced to the room as ``connection_quality`` when it changes."""

from __future__ import annotations

import asyncio
import time

import pytest

from sfu.layer_reader import LayerReader
from sfu.quality import EXCELLENT, GOOD, LIMITS, LOST, POOR, RECOVER_ROUNDS, Measure, QualityMeter

from .frames import count_frames
from .loss import EgressLoss
from .media import PatternVideoTrack, ToneAudioTrack
from .test_layer_reader import send, simulcast_track
from .waiting import eventually


@pytest.mark.parametrize("measure, quality", [
    (Measure(), EXCELLENT),
    (Measure(upstream_loss=0.01, rtt=0.05, jitter=0.01), EXCELLENT),
    (Measure(downstream_loss=0.05), GOOD),
    (Measure(rtt=0.4), GOOD),
    (Measure(jitter=0.05), GOOD),
    (Measure(downstream_loss=0.2), POOR),
    (Measure(upstream_loss=0.1, downstream_loss=0.0), POOR),
    (Measure(rtt=0.9), POOR),
    (Measure(downstream_loss=0.0, silent=True), LOST),
], ids=["nothing", "clean", "some-loss", "slow", "jittery", "lossy-down", "lossy-up", "far", "silent"])
def test_quality_from_figures(measure, quality):
    assert measure.quality() == quality


async def test_a_camera_dynacast_paused_is_not_a_lost_connection():
    """Nobody watches a simulcast camera: dynacast pauses every layer and the
    publisher goes quiet on purpose; silence counts again 3 s after a resume."""
    track = simulcast_track()
    for layer in range(3):
        send(track, layer, 1, keyframe=True)
    start = time.monotonic()
    track.dynacast(start)
    track.dynacast(start + 3)  # unneeded for longer than DYNACAST_DELAY: all paused
    assert track.paused
    meter = QualityMeter()
    meter.evaluate(start + 10, [track], [])
    assert not meter.measure.silent
    reader = LayerReader(track, lambda item: None)  # someone watches again: resumed
    reader.want(0)
    track.dynacast(start + 10)
    assert not track.paused
    meter.evaluate(start + 12, [track], [])
    assert not meter.measure.silent  # the publisher has 3 s to start again
    meter.evaluate(start + 14, [track], [])
    assert meter.measure.silent  # it did not


def test_worse_at_once_better_only_when_it_holds():
    meter = QualityMeter()
    assert meter.judge(POOR) == POOR
    assert meter.judge(EXCELLENT) is None  # one good round is not enough
    assert meter.judge(POOR) is None
    for _ in range(RECOVER_ROUNDS - 1):
        assert meter.judge(GOOD) is None
    assert meter.judge(GOOD) == GOOD
    assert meter.judge(LOST) == LOST


def quality_of(client, participant_id: str) -> str | None:
    updates = [u for e in client.events if e["type"] == "connection_quality" for u in e["updates"]]
    mine = [u["quality"] for u in updates if u["participant_id"] == participant_id]
    return mine[-1] if mine else None


@pytest.mark.slow
async def test_lossy_subscriber_is_poor_then_good_again(server, clients):
    publisher = await clients()
    await publisher.join("quality", "alice")
    await publisher.publish([ToneAudioTrack(), PatternVideoTrack(320, 240)])
    subscriber = await clients()
    await subscriber.join("quality", "bob")
    tracks = {t.kind: t for t in await subscriber.wait_tracks(2)}
    assert len(await count_frames(tracks["video"].track, 1.0)) >= 3
    participant = server.rooms.rooms["quality"].participants[subscriber.participant_id]
    # a loaded machine can start the call with a poor window (late packets while
    # both PCs came up): what matters is that a clean call is good before the loss
    meter = participant.quality
    await eventually(lambda: meter.quality in (EXCELLENT, GOOD), timeout=15,
                     message=lambda: f"a clean call never rated good: {meter.quality} {meter.measure.info()}")

    loss = EgressLoss(participant.subscriber.transport, every=4, drop_retransmissions=True)
    receiving = asyncio.ensure_future(count_frames(tracks["video"].track, 30))  # keep decoding
    try:
        await eventually(lambda: quality_of(subscriber, subscriber.participant_id) == POOR, timeout=10,
                         message="25% loss toward the subscriber was not reported as poor")
        assert quality_of(publisher, subscriber.participant_id) == POOR  # the room hears it too
        update = [u for e in subscriber.events if e["type"] == "connection_quality"
                  for u in e["updates"] if u["quality"] == POOR][-1]
        assert update["downstream_loss"] > 100 * LIMITS[GOOD][0], update  # the lossy direction is named
        assert loss.dropped > 20

        loss.stop()
        await eventually(lambda: quality_of(subscriber, subscriber.participant_id) in (EXCELLENT, GOOD),
                         timeout=15, message="quality did not recover once the loss stopped")
        assert quality_of(publisher, subscriber.participant_id) in (EXCELLENT, GOOD)
    finally:
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
    # the publisher's own upstream was clean all along
    assert quality_of(subscriber, publisher.participant_id) in (None, EXCELLENT, GOOD)
