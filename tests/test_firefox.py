"""Firefox on the demo page: a call with Chromium, a call with simulcast
between two Firefox pages, and failures the page explains in a sentence (media
that cannot connect, a screen share that cannot capture)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from .browser import STATS_JS, TILES_JS, chromium, save_artifact
from .firefox import firefox

pytestmark = pytest.mark.browser

#: getStats of both peer connections, the page's state and status line: what a
#: failing test prints to say where the call stopped.
SUMMARY_JS = """
async () => {
  const client = window.pysfuDemo && window.pysfuDemo.client;
  const summary = {state: document.body.dataset.state, status: (document.getElementById("status") || {}).textContent};
  for (const name of ["publisherPc", "subscriberPc"]) {
    const pc = client && client[name];
    if (!pc) continue;
    const stats = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" || s.type === "outbound-rtp") stats.push(
        [s.type, s.kind, s.rid || "", s.packetsReceived ?? s.packetsSent, s.framesDecoded ?? s.framesEncoded ?? "", s.frameWidth || ""].join(" "));
      if (s.type === "candidate-pair" && s.nominated) stats.push(`pair ${s.state} sent=${s.bytesSent} received=${s.bytesReceived}`);
    });
    summary[name] = {connection: pc.connectionState, ice: pc.iceConnectionState, stats};
  }
  return summary;
}
"""

STATUS_JS = "() => ({state: document.body.dataset.state, status: document.getElementById('status').textContent})"
JOINED_JS = "() => document.body.dataset.state === 'joined'"
REMOTE_VIDEO_JS = f"() => ({TILES_JS})().filter((t) => t.videoWidth > 0).length"


async def print_diagnostics(pages: dict) -> None:
    """Print what each page shows and its getStats summary; pytest shows it on failure."""
    for name, page in pages.items():
        try:
            print(f"--- {name}: {json.dumps(await page.evaluate(SUMMARY_JS), indent=1)}")
        except Exception as exc:  # a dead page must not hide the first failure
            print(f"--- {name}: no summary ({exc!r})")
        print(f"--- {name} console:\n" + "\n".join(page.console[-40:]))


async def chromium_page(browser):
    page = await browser.new_page()
    page.console = []
    page.on("console", lambda message: page.console.append(f"{message.type}: {message.text}"))
    return page


async def wait_until(page, function: str, timeout: float):
    """Evaluate ``function`` in ``page`` until truthy (works for Firefox and Chromium pages)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await page.evaluate(function)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {function} -> {value!r}")
        await asyncio.sleep(0.25)


def _received(stats: list[dict]) -> dict[str, int]:
    """Frames decoded (video) and packets received (audio), summed over streams."""
    video = sum(s["framesDecoded"] for s in stats if s["kind"] == "video")
    audio = sum(s["packetsReceived"] for s in stats if s["kind"] == "audio")
    return {"video": video, "audio": audio}


async def media_keeps_arriving(page, timeout: float = 30) -> None:
    """Video frames decoded and audio packets received both rise from now on."""
    before = _received(await page.evaluate(STATS_JS))
    deadline = time.monotonic() + timeout
    while True:
        await asyncio.sleep(0.5)
        after = _received(await page.evaluate(STATS_JS))
        if after["video"] > before["video"] and after["audio"] > before["audio"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"media stopped arriving: {before} -> {after}")


async def test_firefox_and_chromium_see_and_hear_each_other(dev_server, tmp_path):
    async with firefox(tmp_path / "firefox") as fox, chromium(tmp_path / "chromium") as chrome:
        pages = {"firefox": await fox.new_page(), "chromium": await chromium_page(chrome)}
        try:
            for name, page in pages.items():
                await page.goto(f"{dev_server.http}/?room=mixed&name={name}&autojoin=1")
            for page in pages.values():
                await wait_until(page, JOINED_JS, timeout=30)
            for name, page in pages.items():
                other = "chromium" if name == "firefox" else "firefox"
                tiles = await wait_until(page, f"() => ({TILES_JS})().filter((t) => t.videoWidth > 0)", timeout=40)
                assert [t["name"] for t in tiles] == [other]
            for page in pages.values():
                await media_keeps_arriving(page)
            await pages["firefox"].screenshot(save_artifact("firefox-with-chromium.png"))
        except BaseException:
            await print_diagnostics(pages)
            raise


#: Frame width by simulcast layer (rid) of our camera, once every layer is sent (else null).
LAYERS_SENT_JS = """
async () => {
  const widths = {};
  let sending = true;
  (await window.pysfuDemo.client.publisherPc.getStats()).forEach((s) => {
    if (s.type !== "outbound-rtp" || s.kind !== "video") return;
    widths[s.rid || "-"] = s.frameWidth || 0;
    sending = sending && s.bytesSent > 0 && s.frameWidth > 0;
  });
  return sending && Object.keys(widths).length ? widths : null;
}
"""

#: Width of the video frames we decode now (0: none).
VIDEO_WIDTH_JS = f"""
async () => {{
  const decoding = (await ({STATS_JS})()).filter((s) => s.kind === "video" && s.framesDecoded > 0);
  return Math.max(0, ...decoding.map((s) => s.frameWidth));
}}
"""


async def test_two_firefox_pages_with_simulcast(dev_server, tmp_path):
    """Firefox publishes its 1280x720 fake camera in three layers; the other
    page gets the low one (320 wide) when it asks, and a bigger one again when
    it asks for high (the top layer itself may be held back by bandwidth or CPU)."""
    async with firefox(tmp_path) as fox:
        pages = {"sender": await fox.new_page(), "viewer": await fox.new_page()}
        sender, viewer = pages["sender"], pages["viewer"]
        try:
            for name, page in pages.items():
                await page.goto(f"{dev_server.http}/?room=fox&name={name}&autojoin=1")
            for page in pages.values():
                await wait_until(page, JOINED_JS, timeout=30)
            for page in pages.values():
                await wait_until(page, REMOTE_VIDEO_JS, timeout=40)
                await media_keeps_arriving(page)

            widths = await wait_until(sender, LAYERS_SENT_JS, timeout=30)
            assert sorted(widths) == ["f", "h", "q"] and widths["q"] < widths["f"], f"layers sent: {widths}"
            low = widths["q"]
            sender_id = json.dumps(await sender.evaluate("() => window.pysfuDemo.client.participantId"))
            await viewer.evaluate(f"() => window.pysfuDemo.setQuality({sender_id}, 'low')")
            await wait_until(viewer, f"async () => (await ({VIDEO_WIDTH_JS})()) === {low}", timeout=30)
            await viewer.evaluate(f"() => window.pysfuDemo.setQuality({sender_id}, 'high')")
            await wait_until(viewer, f"async () => (await ({VIDEO_WIDTH_JS})()) > {low}", timeout=30)
        except BaseException:
            await print_diagnostics(pages)
            raise


CONNECT_TIMEOUT_S = 5  # the demo page's ?connectTimeout (pysfu.js's default is 15 s)


async def test_firefox_without_loopback_ice_says_why(dev_server, tmp_path):
    """Firefox drops loopback ICE candidates unless told otherwise, so against a
    loopback-only server its media never connects: the page gives up after the
    connect timeout and says why, instead of showing a call that never starts."""
    async with firefox(tmp_path, prefs={"media.peerconnection.ice.loopback": None}) as fox:
        page = await fox.new_page()
        try:
            await page.goto(f"{dev_server.http}/?room=noloop&name=fox&autojoin=1&connectTimeout={CONNECT_TIMEOUT_S * 1000}")
            await wait_until(page, JOINED_JS, timeout=30)
            shown = await wait_until(page, f"() => document.body.dataset.state === 'error' && ({STATUS_JS})()",
                                     timeout=CONNECT_TIMEOUT_S + 20)
            assert shown["status"].startswith("Disconnected: Could not connect media to the server: ICE did not connect."), shown
            assert "media.peerconnection.ice.loopback=true" in shown["status"], shown
            assert await page.evaluate("() => document.getElementById('status').dataset.code") == "ice_timeout"
            assert any("ice_timeout" in line for line in page.console), page.console
            await page.screenshot(save_artifact("firefox-no-loopback.png"))
        except BaseException:
            await print_diagnostics({"firefox": page})
            raise


async def test_screen_share_failure_is_a_sentence(dev_server, tmp_path):
    """Headless Firefox has no screen to capture: a click on Share screen fails
    with a NotFoundError, whose legacy numeric code (8) the page used to show."""
    async with firefox(tmp_path) as fox:
        page = await fox.new_page()
        try:
            await page.goto(f"{dev_server.http}/?room=share&name=fox&autojoin=1")
            await wait_until(page, JOINED_JS, timeout=30)
            await page.click("#share-btn")
            status = await wait_until(page, "() => document.getElementById('status').dataset.code === 'NotFoundError'"
                                            " && document.getElementById('status').textContent", timeout=15)
            assert status == "Screen share failed: Could not capture: no camera, microphone or screen could be found to capture."
            assert await page.evaluate(JOINED_JS), "a failed share leaves the call up"
        except BaseException:
            await print_diagnostics({"firefox": page})
            raise
