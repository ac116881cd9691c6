"""Slot subscription in the demo page (`?slots=V,A`), in headless Chromium:
one subscriber offer with exactly V video + A audio m-lines, each slot's
occupant shown in its participant's tile and moved when the occupant changes.

The others are aiortc participants publishing a small VP8 camera (see
test_demo_layout.py), so that the only browser is the one under test.
"""

from __future__ import annotations

import asyncio

import pytest

from .browser import DROP_SOCKET_JS, chromium
from .test_demo_layout import open_viewer, publishers, sfu, until

pytestmark = pytest.mark.browser

#: The subscriber PC's m-lines, and per remote tile: frames its <video> has
#: shown, whether it shows a track, and whether its placeholder is visible.
SLOT_VIEW_JS = """
() => {
  const client = window.pysfuDemo.client;
  const pc = client.subscriberPc;
  const tiles = {};
  document.querySelectorAll(".tile[data-participant-id]:not(.local)").forEach((tile) => {
    const video = tile.querySelector("video");
    const placeholder = tile.querySelector(".tile-placeholder");
    tiles[tile.dataset.participantId] = {
      frames: video.getVideoPlaybackQuality().totalVideoFrames,
      showing: Boolean(video.srcObject && video.srcObject.getVideoTracks().length),
      placeholder: Boolean(placeholder) && getComputedStyle(placeholder).display !== "none",
    };
  });
  return {
    mlines: pc ? pc.getTransceivers().map((t) => t.receiver.track.kind) : [],
    slots: client.slots.map((s) => [s.kind, s.participant_id]),
    tiles,
  };
}
"""


async def tile_frames_over(page, seconds: float = 1.5) -> dict:
    """The page's view, with each tile's frames shown during `seconds`."""
    first = await page.evaluate(SLOT_VIEW_JS)
    await asyncio.sleep(seconds)
    second = await page.evaluate(SLOT_VIEW_JS)
    for pid, now in second["tiles"].items():
        before = first["tiles"].get(pid, {}).get("frames", 0)
        now["new_frames"] = max(0, now["frames"] - before) if now["showing"] else 0
    return second


def shows_video(view, pid) -> bool:
    shown = view["tiles"].get(pid, {})
    return shown.get("showing", False) and shown.get("new_frames", 0) >= 5 and not shown.get("placeholder")


def shows_placeholder(view, pid) -> bool:
    shown = view["tiles"].get(pid, {})
    return not shown.get("showing", True) and shown.get("new_frames", 1) == 0 and shown.get("placeholder", False)


async def test_one_video_slot_moves_to_the_pinned_participant(tmp_path):
    async with sfu(tmp_path) as server, publishers(server, ["ana", "ben"]) as (ana, ben):
        async with chromium(tmp_path) as browser:
            page = await open_viewer(browser, server, "&slots=1,1")
            a, b = ana.participant_id, ben.participant_id
            # nobody speaks: the one video slot goes to who has been there longest (ana)
            view = await until(lambda: tile_frames_over(page),
                               lambda v: shows_video(v, a) and shows_placeholder(v, b),
                               timeout=20, what="ana's video in the slot, ben's placeholder")
            assert sorted(view["mlines"]) == ["audio", "video"]  # one offer, 1 + 1 m-lines
            assert ["video", a] in view["slots"]

            await page.evaluate(f"window.pysfuDemo.pin({b!r})")  # pins come first in last-N
            view = await until(lambda: tile_frames_over(page),
                               lambda v: shows_video(v, b) and shows_placeholder(v, a),
                               timeout=15, what="ben's video in the slot after pinning him")
            assert sorted(view["mlines"]) == ["audio", "video"]  # never renegotiated
            assert ["video", b] in view["slots"] and ["video", a] not in view["slots"]

            # the socket drops: the page resumes with fresh PCs, and slots again
            old_pc = await page.evaluate("window.pysfuDemo.client.subscriberPc.__old = true")
            assert await page.evaluate(DROP_SOCKET_JS) == "reconnecting"
            view = await until(lambda: tile_frames_over(page),
                               lambda v: shows_video(v, b) and shows_placeholder(v, a),
                               timeout=20, what="ben's video in the slot after resuming")
            assert old_pc and not await page.evaluate("Boolean(window.pysfuDemo.client.subscriberPc.__old)")
            assert sorted(view["mlines"]) == ["audio", "video"]
            assert page.errors == []
