"""A Chromium page whose worker process crashes joins again by itself
(`leave` reason worker_restarted) and the call carries on both ways."""

from __future__ import annotations

import os
import signal

import pytest

from .browser import RECORD_JS, chromium, frames_of
from .conftest import start_server_process, stop_server_process
from .processes import child_pids
from .waiting import eventually_async

pytestmark = pytest.mark.browser


@pytest.fixture
def two_workers():
    # room limit 1: the second page lands on the other worker
    server = start_server_process(["--dev", "--workers", "2", "--worker-room-limit", "1"])
    yield server
    stop_server_process(server)


async def test_a_page_whose_worker_crashes_joins_again_by_itself(two_workers, tmp_path):
    async with chromium(tmp_path) as browser:
        pages = []
        for name in ["ana", "ben"]:
            page = await browser.new_page()
            await page.goto(f"{two_workers.http}/?room=crash&name={name}&autojoin=1")
            await page.wait_for_selector("body[data-state=joined]", timeout=20000)
            pages.append(page)
        ana, ben = pages
        ana_id = await ana.evaluate("window.pysfuDemo.client.participantId")
        old_ben = await ben.evaluate("window.pysfuDemo.client.participantId")
        await eventually_async(lambda: frames_of(ana, old_ben), lambda n: n > 5, timeout=30)
        await ben.evaluate(RECORD_JS)

        pids = child_pids(two_workers.proc.pid)
        assert len(pids) == 2
        os.kill(pids[1], signal.SIGKILL)  # started second: worker 1, ben's

        await eventually_async(lambda: ben.evaluate("window.seen.map((e) => e.type)"),
                               lambda types: "reconnected" in types, timeout=20)
        new_ben = await ben.evaluate("window.pysfuDemo.client.participantId")
        assert new_ben and new_ben != old_ben  # a new participant: the old one died with its worker
        assert await ben.evaluate("window.pysfuDemo.client.state") == "joined"
        # both ways again: ana decodes the new ben, ben decodes ana
        await eventually_async(lambda: frames_of(ana, new_ben), lambda n: n > 5, timeout=20)
        await eventually_async(lambda: frames_of(ben, ana_id), lambda n: n > 5, timeout=20)
        tile = await ana.evaluate(f"!!document.querySelector('.tile[data-participant-id=\"{old_ben}\"]')")
        assert not tile, "the dead participant's tile is still shown"
