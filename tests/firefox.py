"""Headless Firefox (Debian's firefox-esr) driven over WebDriver BiDi, for end-to-end tests.

Firefox speaks WebDriver BiDi itself (``--remote-debugging-port``), so a
WebSocket is all a test needs: no geckodriver, no Node.  This is the small
part of the protocol the browser tests use: open tabs, navigate, call a
JavaScript function and get its JSON result back, collect console messages,
take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

FIREFOX_PATHS = ["/usr/bin/firefox-esr", "/usr/lib/firefox-esr/firefox-esr", "/usr/bin/firefox"]
LISTENING = re.compile(rb"WebDriver BiDi listening on (ws://\S+)")
START_TIMEOUT = 60  # a cold start on a loaded 2-core machine
COMMAND_TIMEOUT = 60

#: Fake camera and microphone, no permission prompt, loopback ICE candidates
#: (Firefox drops them by default; every test server listens on 127.0.0.1),
#: autoplay with sound, and nothing that talks to the internet.
PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "app.normandy.enabled": False,
    "app.update.disabledForTesting": True,
    "services.settings.server": "data:,",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "extensions.update.enabled": False,
    "browser.newtabpage.enabled": False,
}


def firefox_path() -> str:
    for path in [os.environ.get("PYSFU_FIREFOX", ""), *FIREFOX_PATHS]:
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip(
        "Firefox not found: install Debian's firefox-esr (`apt-get install firefox-esr`; "
        "`make test` does it when run as root) or set PYSFU_FIREFOX"
    )


def have_firefox() -> bool:
    return any(os.access(p, os.X_OK) for p in FIREFOX_PATHS) or bool(shutil.which("firefox-esr"))


class BidiError(AssertionError):
    pass


class Bidi:
    """One WebDriver BiDi session: commands by id, events to listeners."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future] = {}
        self.listeners: list = []  # callables(method, params)
        self._reader = asyncio.ensure_future(self._read())

    async def command(self, method: str, **params) -> dict:
        command_id = self._next_id
        self._next_id += 1
        answer = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = answer
        await self.ws.send_str(json.dumps({"id": command_id, "method": method, "params": params}))
        try:
            message = await asyncio.wait_for(answer, COMMAND_TIMEOUT)
        finally:
            self._waiting.pop(command_id, None)
        if message.get("type") == "error":
            raise BidiError(f"{method}: {message.get('error')}: {message.get('message')}")
        return message["result"]

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if "id" in message:
                answer = self._waiting.get(message["id"])
                if answer and not answer.done():
                    answer.set_result(message)
            elif message.get("type") == "event":
                for listener in self.listeners:
                    listener(message["method"], message["params"])
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(BidiError("Firefox closed the BiDi connection"))

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


class FirefoxPage:
    """A top-level browsing context: navigate, evaluate, click, screenshot; `console` collects its log lines."""

    def __init__(self, bidi: Bidi, context: str) -> None:
        self.bidi = bidi
        self.context = context
        self.console: list[str] = []

    async def goto(self, url: str) -> None:
        await self.bidi.command("browsingContext.navigate", context=self.context, url=url, wait="complete")

    async def evaluate(self, function: str, *args):
        """Call a JavaScript function (source text, may be async) with JSON
        arguments; return its awaited result as JSON."""
        wrapper = f"async (...args) => JSON.stringify(await ({function})(...args.map((a) => JSON.parse(a)))) ?? null"
        result = await self.bidi.command(
            "script.callFunction",
            functionDeclaration=wrapper,
            arguments=[{"type": "string", "value": json.dumps(arg)} for arg in args],
            awaitPromise=True,
            target={"context": self.context},
        )
        if result["type"] == "exception":
            details = result["exceptionDetails"]
            raise BidiError(f"page threw: {details.get('text')}")
        value = result["result"]
        return json.loads(value["value"]) if value.get("type") == "string" else None

    async def click(self, selector: str) -> None:
        """A real mouse click (press and release) on the middle of the element:
        the page gets a user gesture, as from a person."""
        x, y = await self.evaluate(
            "(selector) => { const r = document.querySelector(selector).getBoundingClientRect();"
            " return [Math.round(r.x + r.width / 2), Math.round(r.y + r.height / 2)]; }", selector)
        await self.bidi.command("input.performActions", context=self.context, actions=[{
            "type": "pointer", "id": "mouse", "actions": [
                {"type": "pointerMove", "x": x, "y": y},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0},
            ],
        }])

    async def screenshot(self, path: Path) -> None:
        result = await self.bidi.command("browsingContext.captureScreenshot", context=self.context)
        Path(path).write_bytes(base64.b64decode(result["data"]))


class Firefox:
    def __init__(self, bidi: Bidi, process: asyncio.subprocess.Process, output: list[str]) -> None:
        self.bidi = bidi
        self.process = process
        self.output = output  # the browser's own stderr lines (last ones)
        self.pages: dict[str, FirefoxPage] = {}
        bidi.listeners.append(self._on_event)

    async def new_page(self) -> FirefoxPage:
        """A page in a window of its own: a background tab counts as hidden,
        and the demo pauses the videos of a hidden page."""
        result = await self.bidi.command("browsingContext.create", type="window")
        page = FirefoxPage(self.bidi, result["context"])
        self.pages[page.context] = page
        return page

    def _on_event(self, method: str, params: dict) -> None:
        if method != "log.entryAdded":
            return
        page = self.pages.get(params.get("source", {}).get("context"))
        if page is not None:
            page.console.append(f"{params.get('level')}: {params.get('text')}")


@asynccontextmanager
async def firefox(tmp_path: Path, prefs: dict | None = None):
    """A fresh headless Firefox profile with PREFS (overridden by ``prefs``;
    a value of None removes a pref); yields a Firefox with new_page()."""
    executable = firefox_path()
    profile = tmp_path / "firefox-profile"
    profile.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in {**PREFS, **(prefs or {})}.items() if v is not None}
    (profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in settings.items()))
    process = await asyncio.create_subprocess_exec(
        executable, "--headless", "--no-remote", "--profile", str(profile), "--remote-debugging-port=0", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MOZ_HEADLESS": "1", "HOME": str(tmp_path)},
    )
    output: list[str] = []
    drain = None
    session = None
    try:
        url = await asyncio.wait_for(_listening_url(process, output), START_TIMEOUT)
        drain = asyncio.ensure_future(_keep_last_lines(process, output))
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(f"{url}/session", max_msg_size=64 * 1024 * 1024)
        bidi = Bidi(ws)
        await bidi.command("session.new", capabilities={})
        await bidi.command("session.subscribe", events=["log.entryAdded"])
        browser = Firefox(bidi, process, output)
        try:
            yield browser
        finally:
            try:
                await asyncio.wait_for(bidi.command("browser.close"), 10)
            except (BidiError, asyncio.TimeoutError, aiohttp.ClientError):
                pass
            await bidi.close()
    finally:
        if session is not None:
            await session.close()
        if process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if drain is not None:
            drain.cancel()


async def _listening_url(process: asyncio.subprocess.Process, output: list[str]) -> str:
    while True:
        line = await process.stderr.readline()
        if not line:
            raise AssertionError(f"Firefox exited before listening: {output[-20:]}")
        output.append(line.decode(errors="replace").rstrip())
        match = LISTENING.search(line)
        if match:
            return match.group(1).decode()


async def _keep_last_lines(process: asyncio.subprocess.Process, output: list[str], keep: int = 200) -> None:
    """Read Firefox's stderr to the end (a full pipe would stall it), keeping the last lines."""
    while line := await process.stderr.readline():
        output.append(line.decode(errors="replace").rstrip())
        del output[:-keep]
