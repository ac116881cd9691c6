"""A Chromium page whose network is cut comes back by itself: the others see
it "reconnecting" (never leaving) and decode its video again."""

from __future__ import annotations

import asyncio
import time

import pytest

from .browser import RECORD_JS, chromium, frames_of
from .waiting import eventually_async

pytestmark = pytest.mark.browser

OUTAGE = 5.0  # seconds without network

TILE_JS = """
(participantId) => {
  const tile = document.querySelector(`.tile[data-participant-id="${participantId}"]`);
  const quality = tile && tile.querySelector(".quality-indicator");
  return tile ? {connection: tile.dataset.connection || "", quality: quality ? quality.dataset.quality : ""} : null;
}
"""

#: ana's client state, with her socket's, for the failure message.
SOCKET_JS = """
() => {
  const client = window.pysfuDemo.client;
  return {state: client.state, socket: client.ws ? client.ws.readyState : null};
}
"""

OFFLINE = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
ONLINE = {**OFFLINE, "offline": False}


async def test_a_page_cut_off_for_5_s_comes_back_by_itself(dev_server, tmp_path):
    async with chromium(tmp_path) as browser:
        pages = []
        for name in ["ana", "ben", "cleo"]:
            page = await browser.new_page()
            await page.goto(f"{dev_server.http}/?room=resume&name={name}&autojoin=1")
            pages.append(page)
        for page in pages:
            await page.wait_for_selector("body[data-state=joined]", timeout=20000)
        ana, watchers = pages[0], pages[1:]
        ana_id = await ana.evaluate("window.pysfuDemo.client.participantId")
        for page in pages:
            await page.evaluate(RECORD_JS)
        for page in watchers:  # everyone decodes ana's video
            await eventually_async(lambda page=page: frames_of(page, ana_id), lambda n: n > 10, timeout=30)

        network = await browser.new_cdp_session(ana)
        await network.send("Network.enable")
        await network.send("Network.emulateNetworkConditions", OFFLINE)
        cut = time.monotonic()
        await ana.evaluate("window.pysfuDemo.client.ws.close()")  # the socket dies with the network
        await eventually_async(lambda: ana.evaluate(SOCKET_JS), lambda s: s["state"] == "reconnecting", timeout=20)
        print(f"ana reconnecting {time.monotonic() - cut:.2f} s after her socket was closed")
        for page in watchers:
            await eventually_async(lambda page=page: page.evaluate(TILE_JS, ana_id),
                                   lambda tile: tile["connection"] == "reconnecting", timeout=15)
        await asyncio.sleep(1.0)
        stalled = [await frames_of(page, ana_id) for page in watchers]
        await asyncio.sleep(OUTAGE - 1.0)
        assert await ana.evaluate("window.pysfuDemo.client.state") == "reconnecting"  # still cut off
        for page, before in zip(watchers, stalled):
            assert await frames_of(page, ana_id) - before <= 2, "ana's video kept flowing while cut off"
            assert (await page.evaluate(TILE_JS, ana_id))["quality"] == "lost"

        await network.send("Network.emulateNetworkConditions", ONLINE)
        back = time.monotonic()
        await eventually_async(lambda: ana.evaluate("window.pysfuDemo.client.state"),
                               lambda state: state == "joined", timeout=5)
        rejoined = time.monotonic() - back
        for page, before in zip(watchers, stalled):
            await eventually_async(lambda page=page: frames_of(page, ana_id),
                                   lambda n, before=before: n > before + 10, timeout=10)
        decoding = time.monotonic() - back
        print(f"resume {rejoined:.2f} s, watchers decoding ana again {decoding:.2f} s after the network returned")
        assert rejoined < 5.0
        assert decoding < 8.0, f"ana's video decoded again only after {decoding:.1f} s"

        for page in watchers:
            seen = await page.evaluate("window.seen")
            assert not [e for e in seen if e["type"] == "participant_left"], seen
            states = [e["state"] for e in seen if e["type"] == "participant_state" and e["participant_id"] == ana_id]
            assert states == ["reconnecting", "active"], states
            await eventually_async(lambda page=page: page.evaluate(TILE_JS, ana_id),
                                   lambda tile: tile["connection"] == "active", timeout=5)
        # and ana receives the others again, on her fresh subscriber PC
        for page in watchers:
            other = await page.evaluate("window.pysfuDemo.client.participantId")
            await eventually_async(lambda other=other: frames_of(ana, other), lambda n: n > 5, timeout=10)
        assert [e["type"] for e in await ana.evaluate("window.seen")] == ["reconnecting", "reconnected"]
        assert await ana.evaluate("window.pysfuDemo.client.participantId") == ana_id
