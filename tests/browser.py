"""Headless Chromium (Debian's) driven by Playwright, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

CHROMIUM_PATHS = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
CHROMIUM_FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    for path in [os.environ.get("PYSFU_CHROMIUM", ""), *CHROMIUM_PATHS]:
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip(
        "Chromium not found: install Debian's chromium (`apt-get install chromium`; "
        "`make test` does it when run as root) or set PYSFU_CHROMIUM"
    )


@asynccontextmanager
async def chromium(tmp_path: Path, extra_flags: list[str] = ()):
    """A fresh headless Chromium profile; yields the browser context."""
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed (make test installs it)")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=executable,
            headless=True,
            args=[*CHROMIUM_FLAGS, *extra_flags],
        )
        try:
            yield context
        finally:
            await context.close()


STATS_JS = """
async () => {
  const pc = window.pysfuDemo && window.pysfuDemo.client && window.pysfuDemo.client.subscriberPc;
  if (!pc) return [];
  const out = [];
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp") out.push({
      kind: s.kind, ssrc: s.ssrc, mid: s.mid, framesDecoded: s.framesDecoded || 0,
      packetsReceived: s.packetsReceived || 0, frameWidth: s.frameWidth || 0,
    });
  });
  return out;
}
"""

TILES_JS = """
() => Array.from(document.querySelectorAll(".tile:not(.local)")).map((tile) => {
  const video = tile.querySelector("video");
  return {
    id: tile.dataset.participantId,
    name: (tile.querySelector(".tile-name") || {}).textContent,
    videoWidth: video ? video.videoWidth : 0,
  };
})
"""


#: Records the demo client's connection events in window.seen.
RECORD_JS = """
() => {
  window.seen = [];
  const client = window.pysfuDemo.client;
  for (const type of ["participant_left", "participant_state", "reconnecting", "reconnected", "disconnected"]) {
    client.on(type, (detail) => window.seen.push({type, ...detail, at: Date.now()}));
  }
}
"""


#: Frames decoded so far of one participant's video (0 if not received).
FRAMES_OF_JS = """
async (participantId) => {
  const client = window.pysfuDemo.client;
  const mids = [...client.subscribedMids.values()]
    .filter((m) => m.participant_id === participantId && m.kind === "video").map((m) => m.mid);
  let frames = 0;
  if (!client.subscriberPc) return 0;
  (await client.subscriberPc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && mids.includes(s.mid)) frames += s.framesDecoded || 0;
  });
  return frames;
}
"""


async def frames_of(page, participant_id: str) -> int:
    return await page.evaluate(FRAMES_OF_JS, participant_id)


async def stats_by_kind(page) -> dict[str, list[dict]]:
    stats = await page.evaluate(STATS_JS)
    return {
        "video": [s for s in stats if s["kind"] == "video"],
        "audio": [s for s in stats if s["kind"] == "audio"],
    }


def rising(first: list[dict], second: list[dict], field: str) -> int:
    """How many streams (by SSRC) increased ``field`` between two samples."""
    earlier = {s["ssrc"]: s[field] for s in first}
    return sum(1 for s in second if s[field] > earlier.get(s["ssrc"], 0) and s[field] > 0)


def save_artifact(name: str) -> Path:
    root = Path(__file__).resolve().parent.parent / "test-artifacts"
    root.mkdir(exist_ok=True)
    return root / name


def have_chromium() -> bool:
    return any(os.access(p, os.X_OK) for p in CHROMIUM_PATHS) or bool(shutil.which("chromium"))


#: The page's signaling socket drops as a network failure drops it: the
#: client hears an abnormal close (1006) at once. A plain ws.close() waits for
#: the server's closing handshake, which now and then took over 10 s on a
#: loaded machine and left the page "joined". Returns the client's state just after.
DROP_SOCKET_JS = """
() => {
  const ws = window.pysfuDemo.client.ws;
  const onclose = ws.onclose;
  ws.onclose = null;
  ws.close();
  onclose(new CloseEvent("close", {code: 1006, wasClean: false}));
  return window.pysfuDemo.client.state;
}
"""
