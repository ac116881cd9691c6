"""The demo page's layout (issue 4) in headless Chromium: a paginated grid,
a speaker view and pins, and what they ask of the SFU: off-page video
paused, pinned and visible video kept in the subscriber's last-N.

The other participants are aiortc clients publishing a small VP8 camera
(and a tone that can be switched on, to speak), so that the only browser
is the one whose page is under test.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import pytest

from signaling.client import Client

from .browser import chromium, save_artifact
from .conftest import LOOPBACK, start_server_process, stop_server_process
from .media import PatternVideoTrack, ToneAudioTrack

pytestmark = pytest.mark.browser

ROOM = "layout"

#: Per remote participant: packets and frames of its camera video as received.
VIDEO_FLOW_JS = """
async () => {
  const client = window.pysfuDemo.client;
  const byMid = new Map();
  (await client.subscriberPc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") byMid.set(s.mid, s);
  });
  const flow = {};
  for (const remote of client.remoteTracks.values()) {
    if (remote.kind !== "video") continue;
    const s = byMid.get(remote.mid) || {};
    flow[remote.participant_id] = {packets: s.packetsReceived || 0, frames: s.framesDecoded || 0};
  }
  return flow;
}
"""

#: What the page shows: every tile, in document order, and the pager.
VIEW_JS = """
() => ({
  tiles: Array.from(document.querySelectorAll(".tile[data-participant-id]")).map((tile) => ({
    id: tile.dataset.participantId,
    local: tile.classList.contains("local"),
    hidden: tile.hidden,
    spotlight: Boolean(tile.closest("#spotlight")),
    pinned: tile.dataset.pinned === "true",
    pinMarker: Boolean(tile.querySelector(".tile-indicator[data-kind=pin]:not([hidden])")),
    pinPressed: (tile.querySelector(".pin-btn") || {getAttribute: () => null}).getAttribute("aria-pressed"),
    width: tile.getBoundingClientRect().width,
    videoWidth: tile.querySelector("video").videoWidth,
  })),
  pager: document.getElementById("pager").hidden ? null : document.getElementById("page-label").textContent,
  layout: document.body.dataset.layout,
})
"""


@asynccontextmanager
async def sfu(tmp_path, last_n: int | None = None):
    """A `pysfu serve` process, with `last_n` set through a config file."""
    extra = []
    if last_n is not None:
        config = tmp_path / "pysfu.yaml"
        config.write_text(f"sfu:\n  last_n: {last_n}\n")
        extra = ["--config", str(config)]
    server = start_server_process(extra)
    try:
        yield server
    finally:
        stop_server_process(server)


@asynccontextmanager
async def publishers(server, names: list[str], tone: bool = False):
    """aiortc participants, joined in this order, each publishing a 320x240
    camera (and, with `tone`, a silent tone whose `amplitude` can be raised)."""
    clients: list[Client] = []
    try:
        for name in names:
            client = Client(server.url, ice_addresses=LOOPBACK, timeout=20)
            clients.append(client)
            await client.connect()
            await client.join(ROOM, name, auto_subscribe=False)
            tracks = [PatternVideoTrack(320, 240)]
            if tone:
                client.tone = ToneAudioTrack(amplitude=0)
                tracks.append(client.tone)
            await client.publish(tracks)
        yield clients
    finally:
        for client in clients:
            await client.close()


async def open_viewer(browser, server, query: str = ""):
    """The demo page, joined without camera or microphone; page errors collected."""
    page = await browser.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    await page.goto(f"{server.http}/?room={ROOM}&name=viewer&autojoin=1&audio=0&video=0{query}")
    await page.wait_for_selector("body[data-state=joined]", timeout=20000)
    return page


async def until(fetch, check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s: {value}"
        await asyncio.sleep(0.25)


async def flow_over(page, seconds: float = 1.5) -> dict[str, dict[str, int]]:
    """Packets and frames received per remote participant over `seconds`."""
    first = await page.evaluate(VIDEO_FLOW_JS)
    await asyncio.sleep(seconds)
    second = await page.evaluate(VIDEO_FLOW_JS)
    zero = {"packets": 0, "frames": 0}
    return {pid: {k: v - first.get(pid, zero)[k] for k, v in now.items()} for pid, now in second.items()}


def decoding(flow, pid) -> bool:
    return flow.get(pid, {}).get("frames", 0) >= 5


def stopped(flow, pid) -> bool:
    # a packet or two may still be in flight when the window opens
    return pid in flow and flow[pid]["packets"] <= 3


def tile(view, pid) -> dict:
    return next(t for t in view["tiles"] if t["id"] == pid)


def pin_state(view, pid) -> tuple:
    shown = tile(view, pid)
    return shown["pinned"], shown["pinMarker"], shown["pinPressed"]


async def test_pinning_keeps_the_pinned_video_in_last_n(tmp_path):
    async with sfu(tmp_path, last_n=1) as server, publishers(server, ["ana", "ben"]) as (ana, ben):
        async with chromium(tmp_path) as browser:
            page = await open_viewer(browser, server)
            a, b = ana.participant_id, ben.participant_id
            # last-N 1: of the two on screen, the first in the grid (ana) gets video
            await until(lambda: flow_over(page), lambda f: decoding(f, a) and stopped(f, b),
                        timeout=20, what="ana's video only")
            view = await page.evaluate(VIEW_JS)
            assert [t["id"] for t in view["tiles"]] == [view["tiles"][0]["id"], a, b] and view["tiles"][0]["local"]
            assert not any(t["hidden"] for t in view["tiles"]) and view["pager"] is None

            await page.click(f".tile[data-participant-id='{b}'] .pin-btn")  # pin ben
            await until(lambda: flow_over(page), lambda f: decoding(f, b) and stopped(f, a),
                        timeout=15, what="ben's video only, once pinned")
            view = await page.evaluate(VIEW_JS)
            assert [t["id"] for t in view["tiles"][1:]] == [b, a]  # the pinned one first
            assert pin_state(view, b) == (True, True, "true")  # data-pinned, the marker, the button
            assert pin_state(view, a) == (False, False, "false")
            # the unpinned tile shows that its video is paused (layer "off"), not a frozen frame
            assert await page.evaluate(
                f"document.querySelector(\".tile[data-participant-id='{a}']\").dataset.layer") == "off"
            await page.screenshot(path=str(save_artifact("layout-pinned.png")))

            await page.click(f".tile[data-participant-id='{b}'] .pin-btn")  # unpin
            await until(lambda: flow_over(page), lambda f: decoding(f, a) and stopped(f, b),
                        timeout=15, what="ana's video back after unpinning")
            view = await page.evaluate(VIEW_JS)
            assert not tile(view, b)["pinMarker"] and [t["id"] for t in view["tiles"][1:]] == [a, b]
            assert page.errors == []


async def test_pages_show_one_participant_and_pause_the_other(tmp_path):
    async with sfu(tmp_path) as server, publishers(server, ["ana", "ben"]) as (ana, ben):
        async with chromium(tmp_path) as browser:
            page = await open_viewer(browser, server, "&pageSize=1")
            a, b = ana.participant_id, ben.participant_id
            # page 1: ana; ben's tile is hidden and its video paused at the SFU
            # (last-N is 25 here: only update_track_settings stops it)
            await until(lambda: flow_over(page), lambda f: decoding(f, a) and stopped(f, b),
                        timeout=20, what="page 1: ana's video only")
            view = await page.evaluate(VIEW_JS)
            assert view["pager"] == "Page 1 of 2"
            assert (tile(view, a)["hidden"], tile(view, b)["hidden"]) == (False, True)
            assert await page.is_disabled("#page-prev") and not await page.is_disabled("#page-next")

            await page.click("#page-next")
            view = await page.evaluate(VIEW_JS)
            assert view["pager"] == "Page 2 of 2"
            assert (tile(view, a)["hidden"], tile(view, b)["hidden"]) == (True, False)
            await until(lambda: flow_over(page), lambda f: decoding(f, b) and stopped(f, a),
                        timeout=15, what="page 2: ben's video only")
            await until(lambda: page.evaluate(VIEW_JS), lambda v: tile(v, b)["videoWidth"] == 320,
                        timeout=5, what="ben's picture shown")
            await page.screenshot(path=str(save_artifact("layout-page-2.png")))

            await page.click("#page-prev")  # and back
            await until(lambda: flow_over(page), lambda f: decoding(f, a) and stopped(f, b),
                        timeout=15, what="page 1 again: ana's video only")
            assert page.errors == []


async def test_speakers_come_onto_the_first_page_and_the_big_tile_unless_pinned(tmp_path):
    async with sfu(tmp_path) as server, publishers(server, ["quiet", "talker"], tone=True) as (quiet, talker):
        async with chromium(tmp_path) as browser:
            page = await open_viewer(browser, server, "&pageSize=1")
            q, t = quiet.participant_id, talker.participant_id

            def shown(view):
                return [x["id"] for x in view["tiles"] if not x["local"] and not x["hidden"]]

            def spotlit(view):
                return [x["id"] for x in view["tiles"] if x["spotlight"]]

            # nobody speaks: the first to join is on page 1
            await until(lambda: page.evaluate(VIEW_JS), lambda v: shown(v) == [q] and v["pager"] == "Page 1 of 2",
                        timeout=10, what="quiet on page 1")

            talker.tone.amplitude = 0.3  # about -14 dBov: the dominant speaker within a few seconds
            await until(lambda: page.evaluate(VIEW_JS), lambda v: shown(v) == [t] and v["pager"] == "Page 1 of 2",
                        timeout=15, what="the talker swapped onto page 1")
            await until(lambda: flow_over(page), lambda f: decoding(f, t) and stopped(f, q),
                        timeout=15, what="the talker's video only")

            await page.click("#speaker-view-btn")  # the speaker large, the others in a filmstrip
            view = await page.evaluate(VIEW_JS)
            assert view["layout"] == "speaker" and spotlit(view) == [t] and shown(view) == [t, q]
            assert await page.get_attribute("#speaker-view-btn", "aria-pressed") == "true"
            big, small = tile(view, t), tile(view, q)
            assert big["width"] > 2.5 * small["width"], (big, small)
            await until(lambda: flow_over(page), lambda f: decoding(f, t) and decoding(f, q),
                        timeout=15, what="both videos decoding")
            await page.screenshot(path=str(save_artifact("layout-speaker.png")))

            await page.click(f".tile[data-participant-id='{q}'] .pin-btn")  # a pin wins over the speaker
            view = await page.evaluate(VIEW_JS)
            assert spotlit(view) == [q] and tile(view, q)["pinMarker"]
            await asyncio.sleep(1.5)  # the talker keeps talking: still the pinned one
            assert spotlit(await page.evaluate(VIEW_JS)) == [q]

            await page.click("#grid-view-btn")  # pinned first, even before the speaker
            view = await page.evaluate(VIEW_JS)
            assert view["layout"] == "grid" and spotlit(view) == [] and await page.is_hidden("#spotlight")
            assert shown(view) == [q] and view["pager"] == "Page 1 of 2"
            await asyncio.sleep(1.5)
            assert shown(await page.evaluate(VIEW_JS)) == [q]
            assert page.errors == []


async def test_grid_pages_fit_the_window(tmp_path):
    async with sfu(tmp_path) as server, publishers(server, ["ana", "ben", "cleo"]) as clients:
        async with chromium(tmp_path) as browser:
            page = await open_viewer(browser, server)
            await page.set_viewport_size({"width": 1280, "height": 720})
            everyone = sorted(c.participant_id for c in clients)

            def remote_shown(view):
                return sorted(x["id"] for x in view["tiles"] if not x["local"] and not x["hidden"])

            view = await until(lambda: page.evaluate(VIEW_JS), lambda v: remote_shown(v) == everyone,
                               timeout=10, what="all three on one page")
            assert view["pager"] is None
            await page.set_viewport_size({"width": 520, "height": 440})  # a small window: fewer per page
            view = await until(lambda: page.evaluate(VIEW_JS), lambda v: v["pager"] is not None,
                               timeout=5, what="pages")
            per_page = await page.evaluate("window.pysfuDemo.layout.pageSize")
            assert 1 <= per_page < 3 and len(remote_shown(view)) == per_page
            assert view["pager"] == f"Page 1 of {-(-3 // per_page)}"
            bottoms = await page.evaluate(
                "Array.from(document.querySelectorAll('.tile:not([hidden])')).map((t) => t.getBoundingClientRect().bottom)")
            assert max(bottoms) <= 440 + 1, bottoms  # the page's tiles are all in the window
            await page.screenshot(path=str(save_artifact("layout-small-window.png")))
            assert page.errors == []


#: layout.js, the pure part: (function, arguments, expected result)
LAYOUT_CASES = [
    ("displayOrder", [["a", "b", "c"], ["c", "x"]], ["c", "a", "b"]),
    ("spotlightOf", [["a", "b", "c"], [], [None, None]], "a"),
    ("spotlightOf", [["a", "b", "c"], [], ["b", "a"]], "b"),
    ("spotlightOf", [["a", "b", "c"], [], ["gone", "c"]], "c"),
    ("spotlightOf", [["a", "b", "c"], ["c", "b"], ["a", None]], "c"),
    ("spotlightOf", [[], [], [None, None]], None),
    ("paginate", [["a", "b", "c"], 2, 2], {"page": 2, "pages": 2, "items": ["c"]}),
    ("paginate", [["a", "b", "c"], 2, 9], {"page": 2, "pages": 2, "items": ["c"]}),
    ("paginate", [[], 4, 1], {"page": 1, "pages": 1, "items": []}),
    # d speaks from page 2: swaps with the least recently heard of page 1 (b)
    ("promote", [["a", "b", "c", "d"], "d", ["a", "b"], {"a": 5}], ["a", "d", "c", "b"]),
    ("promote", [["a", "b", "c", "d"], "b", ["a", "b"], {}], ["a", "b", "c", "d"]),
    ("promote", [["a", "b"], "b", [], {}], ["a", "b"]),  # page 1 all pinned: nothing moves
    ("gridCapacity", [900, 540, 12], 16),
    ("gridCapacity", [420, 150, 12], 2),
    ("gridCapacity", [0, 0, 12], 16),
    ("filmstripCapacity", [900, 12], 4),
    ("gridShape", [3, 900, 540, 12], {"columns": 2, "tileWidth": 444}),
    ("gridShape", [1, 900, 540, 12], {"columns": 1, "tileWidth": 900}),
]

LAYOUT_JS = """
async (cases) => {
  const layout = await import("/layout.js");
  return cases.map(([name, args]) => {
    if (name === "promote") args = [args[0], args[1], args[2], new Map(Object.entries(args[3]))];
    return layout[name](...args);
  });
}
"""


async def test_layout_functions(server_process, tmp_path):
    async with chromium(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto(f"{server_process.http}/")
        results = await page.evaluate(LAYOUT_JS, [[name, args] for name, args, _ in LAYOUT_CASES])
    for (name, args, expected), result in zip(LAYOUT_CASES, results):
        assert result == expected, (name, args)
