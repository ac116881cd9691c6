"""Three people in headless Chromium see and hear each other via the demo page."""

from __future__ import annotations

import asyncio

import pytest

from .browser import TILES_JS, chromium, rising, save_artifact, stats_by_kind
from .waiting import eventually_async

pytestmark = pytest.mark.browser


async def test_three_pages_see_and_hear_each_other(dev_server, tmp_path):
    async with chromium(tmp_path) as browser:
        pages = []
        for name in ["ana", "ben", "cleo"]:
            page = await browser.new_page()
            await page.goto(f"{dev_server.http}/?room=e2e&name={name}&autojoin=1")
            pages.append(page)
        for page in pages:
            await page.wait_for_selector("body[data-state=joined]", timeout=15000)

        names = ["ana", "ben", "cleo"]
        for index, page in enumerate(pages):  # two remote tiles, named, with video
            tiles = await eventually_async(
                lambda page=page: page.evaluate(TILES_JS),
                lambda tiles: len(tiles) == 2 and all(t["videoWidth"] > 0 for t in tiles),
                timeout=15,
            )
            assert sorted(t["name"] for t in tiles) == [n for n in names if n != names[index]]

        before = [await stats_by_kind(page) for page in pages]
        await asyncio.sleep(2)
        after = [await stats_by_kind(page) for page in pages]
        for index, (first, second) in enumerate(zip(before, after)):
            decoded = rising(first["video"], second["video"], "framesDecoded")
            heard = rising(first["audio"], second["audio"], "packetsReceived")
            assert decoded >= 2, f"page {index}: video decoding from {decoded} of 2 others"
            assert heard >= 2, f"page {index}: audio arriving from {heard} of 2 others"
            assert all(s["frameWidth"] > 0 for s in second["video"] if s["framesDecoded"])

        await pages[0].screenshot(path=str(save_artifact("three-pages-ana.png")))

        leaver_id = await pages[2].evaluate("window.pysfuDemo.client.participantId")
        await pages[2].click("#leave-btn")
        for page in pages[:2]:
            await eventually_async(
                lambda page=page: page.evaluate(TILES_JS),
                lambda tiles: leaver_id not in [t["id"] for t in tiles] and len(tiles) == 1,
                timeout=5,
            )
