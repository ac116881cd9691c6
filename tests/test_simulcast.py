"""Simulcast end to end: Chromium publishes three layers through the demo
page; subscribers get the layer they ask for, fit their bandwidth, and
layers nobody needs stop at the publisher (dynacast)."""

from __future__ import annotations

import asyncio
import time

import pytest

from .browser import chromium
from .prometheus import scrape
from .raw_subscriber import RawSubscriber
from .waiting import eventually, eventually_async

pytestmark = pytest.mark.browser

#: Seconds a steady estimate is held while no layer may change: dozens of
#: allocation rounds and several key frame intervals.
STEADY_SECONDS = 15

INBOUND_VIDEO_JS = """
async () => {
  const pc = window.pysfuDemo.client.subscriberPc;
  let found = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") found = {
      frameWidth: s.frameWidth || 0, framesDecoded: s.framesDecoded || 0,
    };
  });
  return found;
}
"""


async def publish_camera(browser, server, room: str):
    """A demo page that joins and publishes its (fake) 1280x720 camera."""
    page = await browser.new_page()
    await page.goto(f"{server.http}/?room={room}&name=presenter&autojoin=1&audio=0")
    await page.wait_for_selector("body[data-state=joined]", timeout=15000)
    participant_id = await page.evaluate("window.pysfuDemo.client.participantId")
    track_id = await page.evaluate(
        "window.pysfuDemo.published.filter((t) => t && t.kind === 'video')[0].id"
    )
    return page, participant_id, track_id


PUBLISHER_LAYERS_JS = """
async () => {
  const out = [];
  (await window.pysfuDemo.client.publisherPc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") out.push(
      [s.rid, s.frameWidth, s.framesEncoded, s.qualityLimitationReason, s.targetBitrate]);
  });
  return out;
}
"""


async def wait_for_width(page, subscriber, width: int, timeout: float, what: str) -> None:
    """Wait until the subscriber's key frames have this width; on failure say
    what the publisher was sending and what the subscriber got."""
    deadline = time.monotonic() + timeout
    while subscriber.width != width:
        if time.monotonic() > deadline:
            layers = await page.evaluate(PUBLISHER_LAYERS_JS)
            got = [(e["quality"], e["width"], round(e["at"] - deadline + timeout, 1))
                   for e in subscriber.events if e["type"] == "layer_changed"]
            keys = [(w, round(t - deadline + timeout, 1)) for t, w, _ in subscriber.frame_sizes[-5:]]
            raise AssertionError(
                f"{what}: width {subscriber.width} after {timeout} s; publisher sends {layers}; "
                f"layer events (quality, width, s) {got}; last key frames (width, s) {keys}; "
                f"{subscriber.video_packets} video packets")
        await asyncio.sleep(0.1)


async def steady_rates(server, ordered, samples: int = 4, tries: int = 80) -> dict[str, float]:
    """Each layer's received rate, once all three stayed within 10 % for
    ``samples`` scrapes 0.5 s apart and ``ordered(low, medium, high)`` holds."""
    steady, last = 0, (0.0, 0.0, 0.0)
    for _ in range(tries):
        await asyncio.sleep(0.5)
        metrics = await scrape(server.http)
        rates = tuple(metrics[f'pysfu_layer_bitrate_bps{{quality="{q}"}}'] for q in ("low", "medium", "high"))
        close = all(abs(now - before) < 0.1 * now for now, before in zip(rates, last))
        steady = steady + 1 if ordered(*rates) and close else 0
        if steady >= samples:
            return dict(zip(("low", "medium", "high"), rates))
        last = rates
    raise AssertionError(f"layer rates never settled: {[round(r) for r in rates]}")


async def test_subscriber_asks_low_high_low(server_process, tmp_path):
    async with chromium(tmp_path) as browser:
        _, publisher_id, _ = await publish_camera(browser, server_process, "sim")
        viewer = await browser.new_page()
        await viewer.goto(f"{server_process.http}/?room=sim&name=viewer&autojoin=1&audio=0&video=0")
        await viewer.wait_for_selector("body[data-state=joined]", timeout=15000)
        await eventually(lambda: True)  # let the first frames flow

        async def wait_for_decoded_width(expected: int) -> None:
            deadline = time.monotonic() + 2.0
            last_decoded, last_progress = -1, time.monotonic()
            while True:
                stats = await viewer.evaluate(INBOUND_VIDEO_JS)
                now = time.monotonic()
                if stats and stats["framesDecoded"] > last_decoded:
                    last_decoded, last_progress = stats["framesDecoded"], now
                assert now - last_progress < 0.5 or last_decoded < 0, "video froze"
                if stats and abs(stats["frameWidth"] - expected) <= expected * 0.1:
                    return
                assert now < deadline, f"frameWidth {stats and stats['frameWidth']} != {expected} after 2 s"
                await asyncio.sleep(0.1)

        await eventually_async(lambda: viewer.evaluate(INBOUND_VIDEO_JS), lambda s: s and s["framesDecoded"] > 10)
        for quality, width in [("low", 320), ("high", 1280), ("low", 320)]:
            await viewer.evaluate(f"window.pysfuDemo.setQuality({publisher_id!r}, {quality!r})")
            await wait_for_decoded_width(width)
            await asyncio.sleep(0.5)
        metrics = await scrape(server_process.http)
        for quality in ("low", "medium", "high"):
            assert metrics[f'pysfu_layers_flowing{{quality="{quality}"}}'] >= 1, f"server never saw {quality}"


async def test_bandwidth_estimate_chooses_layers_without_flapping(server_process, tmp_path):
    async with chromium(tmp_path) as browser:
        page, _, track_id = await publish_camera(browser, server_process, "bwe")
        subscriber = RawSubscriber(server_process.url)
        try:
            await subscriber.join("bwe")
            await wait_for_width(page, subscriber, 1280, 20, "high layer never came")
            # the publisher ramps its layers up for seconds after the first key
            # frames: an estimate given before that is judged against rates that
            # are still growing (the middle layer fits, then outgrows it)
            rates = await steady_rates(server_process, lambda low, medium, high: 0 < low < medium < high)
            switches = len(subscriber.events)
            subscriber.report_remb(int((rates["low"] * rates["medium"]) ** 0.5))  # between low and medium
            await wait_for_width(page, subscriber, 320, 5, "not on low within 5 s")
            changes = lambda: [e["quality"] for e in subscriber.events[switches:] if e["type"] == "layer_changed"]
            await eventually(changes, timeout=2)  # the event follows its key frame over another socket
            assert changes()[0] == "low", f"not straight to low with layers at {rates}: {changes()}"

            subscriber.report_remb(5_000_000)
            await wait_for_width(page, subscriber, 1280, 10, "not back on high in 10 s")

            # layers just resumed by dynacast: wait until their rates settle
            rates = await steady_rates(server_process, lambda low, medium, high: high > 2 * medium > 0)
            # room for the middle layer with headroom (keyframe bursts, the encoder's
            # drift), not for the top one
            estimate = int(min(2 * rates["medium"], 0.7 * rates["high"]))
            subscriber.report_remb(estimate)
            await wait_for_width(page, subscriber, 640, 5, "not on medium")
            layer_events = lambda: [e for e in subscriber.events if e["type"] == "layer_changed"]
            # the event follows the key frame it announces over another socket
            await eventually(lambda: layer_events()[-1]["quality"] == "medium", timeout=2)
            settled = len(layer_events())
            start, rates = time.monotonic(), []
            while time.monotonic() - start < STEADY_SECONDS:
                await asyncio.sleep(2)
                metrics = await scrape(server_process.http)
                rates.append((round(time.monotonic() - start), *(
                    int(metrics[f'pysfu_layer_bitrate_bps{{quality="{q}"}}']) // 1000 for q in ("low", "medium", "high"))))
            changes = [(e["quality"], round(e["at"] - start, 1)) for e in layer_events()[settled:]]
            assert changes == [], (
                f"the layer changed under a steady estimate of {estimate // 1000} kbps: {changes}; "
                f"layer kbps (s, low, medium, high): {rates}")
            assert subscriber.width == 640
        finally:
            await subscriber.close()


async def test_dynacast_pauses_unwatched_layers(server_process, tmp_path):
    async with chromium(tmp_path) as browser:
        page, _, _ = await publish_camera(browser, server_process, "dyna")
        watcher = RawSubscriber(server_process.url)
        await watcher.join("dyna")
        # Chromium's own ramp to its top layer (not what this test is about): generous on a busy box
        await wait_for_width(page, watcher, 1280, 20, "the high layer never came")
        high = 'pysfu_layer_bitrate_bps{quality="high"}'
        await eventually_async(lambda: scrape(server_process.http), lambda m: m[high] > 100_000, timeout=5)

        await watcher.close()  # the last subscriber goes: nobody watches the camera
        low = 'pysfu_layer_bitrate_bps{quality="low"}'
        started = time.monotonic()
        while any(m > 10_000 for m in map((await scrape(server_process.http)).get, (high, low))):
            assert time.monotonic() - started < 5, "the publisher kept sending a layer nobody watches"
            await asyncio.sleep(0.25)

        newcomer = RawSubscriber(server_process.url)
        try:
            await newcomer.join("dyna")
            await wait_for_width(page, newcomer, 1280, 10, "high did not come back")
            await eventually_async(lambda: scrape(server_process.http), lambda m: m[high] > 100_000, timeout=5)
        finally:
            await newcomer.close()



STOP_TOP_LAYER_JS = """
async () => {
  for (const {transceiver} of window.pysfuDemo.client.localTracks.values()) {
    const sender = transceiver.sender;
    if (!sender.track || sender.track.kind !== "video") continue;
    const params = sender.getParameters();
    for (const encoding of params.encodings) if (encoding.rid === "f") encoding.active = false;
    await sender.setParameters(params);
    return true;
  }
  return false;
}
"""


async def test_fallback_when_the_top_layer_stops(server_process, tmp_path):
    async with chromium(tmp_path) as browser:
        page, _, _ = await publish_camera(browser, server_process, "fallback")
        subscriber = RawSubscriber(server_process.url)
        try:
            await subscriber.join("fallback")
            await wait_for_width(page, subscriber, 1280, 20, "high layer never came")
            before = len(subscriber.events)
            assert await page.evaluate(STOP_TOP_LAYER_JS)  # publisher trouble: f stops
            stopped = time.monotonic()
            await wait_for_width(page, subscriber, 640, 3, "no fallback to medium")
            took = time.monotonic() - stopped
            # 0.5 s to notice the silence, then a keyframe of the middle layer
            assert took < 2.0, f"fallback took {took:.2f} s"
            changes = [e["quality"] for e in subscriber.events[before:] if e["type"] == "layer_changed"]
            assert "medium" in changes, changes
        finally:
            await subscriber.close()


PUBLISH_H264_SIMULCAST_JS = """
async (room) => {
  const {PysfuClient} = await import("/pysfu.js");
  const client = new PysfuClient();
  window.h264client = client;
  await client.join(room, "h264-presenter", {token: await fetchDevToken(room)});
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 1280, height: 720}});
  const pc = client.publisherPc;
  const transceiver = pc.addTransceiver(stream.getVideoTracks()[0], {
    direction: "sendonly",
    sendEncodings: [{rid: "q", scaleResolutionDownBy: 4}, {rid: "h", scaleResolutionDownBy: 2}, {rid: "f"}],
  });
  const codecs = RTCRtpSender.getCapabilities("video").codecs;
  transceiver.setCodecPreferences([
    ...codecs.filter((c) => c.mimeType === "video/H264" && /packetization-mode=1/.test(c.sdpFmtpLine)),
    ...codecs.filter((c) => c.mimeType === "video/rtx"),
  ]);
  await pc.setLocalDescription(await pc.createOffer());
  const response = await client.request({
    type: "publish", sdp: pc.localDescription.sdp, tracks: [{mid: transceiver.mid, source: "camera"}],
  });
  client._connection.gates.publisher.open();
  await pc.setRemoteDescription({type: "answer", sdp: response.sdp});
  return [client.participantId, response.tracks[0].codec];

  async function fetchDevToken(room) {
    const reply = await fetch(`/dev/token?room=${room}&identity=h264-presenter`);
    return reply.ok ? (await reply.json()).token : undefined;
  }
}
"""


async def test_h264_simulcast_switches_cleanly(server_process, tmp_path):
    async with chromium(tmp_path) as browser:
        presenter = await browser.new_page()
        await presenter.goto(f"{server_process.http}/")
        publisher_id, codec = await presenter.evaluate(PUBLISH_H264_SIMULCAST_JS, "h264sim")
        assert codec == "video/H264"
        viewer = await browser.new_page()
        await viewer.goto(f"{server_process.http}/?room=h264sim&name=viewer&autojoin=1&audio=0&video=0")
        await viewer.wait_for_selector("body[data-state=joined]", timeout=15000)
        await eventually_async(lambda: viewer.evaluate(INBOUND_VIDEO_JS), lambda s: s and s["framesDecoded"] > 10)
        for quality, width in [("low", 320), ("high", 1280), ("low", 320)]:
            await viewer.evaluate(f"window.pysfuDemo.setQuality({publisher_id!r}, {quality!r})")
            stats = await eventually_async(
                lambda: viewer.evaluate(INBOUND_VIDEO_JS),
                lambda s: s and abs(s["frameWidth"] - width) <= width * 0.1,
                timeout=3,
            )
            decoded = stats["framesDecoded"]
            await asyncio.sleep(2)  # software H.264 at 1280x720 on a busy CI core: >= 5 fps
            after = await viewer.evaluate(INBOUND_VIDEO_JS)
            assert after["framesDecoded"] > decoded + 10, f"{quality}: {decoded} then {after} 2 s later"
