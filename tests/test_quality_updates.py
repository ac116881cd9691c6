"""Connection quality changes reach the room in batches (sfu/quality_updates.py)."""

from __future__ import annotations

import asyncio

from sfu.quality_updates import QualityUpdates

from .waiting import eventually


def rating(participant_id: str, quality: str) -> dict:
    return {"participant_id": participant_id, "quality": quality}


async def test_changes_of_one_moment_go_out_together():
    sent: list[list[dict]] = []
    updates = QualityUpdates(sent.append, batch=0.05)
    updates.add("PA_a", rating("PA_a", "poor"))
    updates.add("PA_b", rating("PA_b", "good"))
    updates.add("PA_a", rating("PA_a", "lost"))  # the newest replaces the one waiting
    assert sent == []
    await eventually(lambda: sent)
    assert sent == [[rating("PA_a", "lost"), rating("PA_b", "good")]]
    updates.add("PA_b", rating("PA_b", "excellent"))  # a later change: the next batch
    await eventually(lambda: len(sent) == 2)
    assert sent[1] == [rating("PA_b", "excellent")]


async def test_who_left_is_not_announced_and_stop_cancels():
    sent: list[list[dict]] = []
    updates = QualityUpdates(sent.append, batch=0.05)
    updates.add("PA_a", rating("PA_a", "poor"))
    updates.forget("PA_a")
    updates.add("PA_c", rating("PA_c", "poor"))
    updates.stop()
    await asyncio.sleep(0.2)
    assert sent == []
    updates.add("PA_d", rating("PA_d", "good"))  # usable again after a stop
    await eventually(lambda: sent)
    assert sent == [[rating("PA_d", "good")]]
