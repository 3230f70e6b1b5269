"""Headless Chromium over the DevTools protocol (aiohttp's websocket): open a page, collect console errors and
uncaught exceptions, query the rendered DOM, take a screenshot. Used by the HTML report's tests and for the
README's screenshot.

    async with HeadlessChromium() as browser:
        page = await browser.open(Path("report.html"), screenshot=Path("shot.png"))
        assert not page.errors and await page.evaluate("document.title")
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def external_references(html: str) -> list[str]:
    """What a page would fetch or run: scripts, and links, images, fonts or imports that are not data: URIs."""
    found = re.findall(r"<script\b", html, flags=re.IGNORECASE)
    found += re.findall(r"""(?:src|href)\s*=\s*["'](?!data:|#)[^"']*"""  # links and images
                        r"""|url\(\s*["']?(?!data:|#)[^)]*\)|@import[^;]*""", html)  # CSS fetches
    return found


class BrowserMissing(RuntimeError):
    """No Chromium on this machine (install Debian's `chromium`, or set FLUX_ASYNC_CHROMIUM to a binary)."""


def find_chromium() -> str:
    explicit = os.environ.get("FLUX_ASYNC_CHROMIUM")
    found = explicit or next((path for name in CANDIDATES if (path := shutil.which(name))), None)
    if not found:
        raise BrowserMissing("no Chromium found: install it (Debian: apt-get install chromium; .ci/run does) or set "
                             "FLUX_ASYNC_CHROMIUM to its binary")
    return found


@dataclass
class Page:
    """One opened page: `errors` holds console errors and uncaught exceptions, as text."""

    session: _Session
    errors: list[str] = field(default_factory=list)

    async def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page (exceptions become RuntimeError)."""
        result = await self.session.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")


class _Session:
    """Commands and events on one page's DevTools websocket."""

    def __init__(self, websocket):
        self.websocket, self.ids, self.pending, self.events = websocket, itertools.count(1), {}, asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.websocket:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                await self.events.put(data)

    async def call(self, method: str, **params) -> dict:
        ident = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        await self.websocket.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})


def _error_text(event: dict) -> str | None:
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return "exception: " + (details.get("exception", {}).get("description") or details.get("text", ""))
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console." + params["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                             for a in params.get("args", []))
    if method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        entry = params["entry"]
        return f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip()
    return None


class HeadlessChromium:
    """`async with HeadlessChromium() as browser`: Chromium started headless (--no-sandbox --disable-gpu), closed
    with its profile folder on exit."""

    def __init__(self, width: int = 1280, height: int = 800):
        self.width, self.height = width, height
        self.process: subprocess.Popen | None = None
        self.sessions: list[_Session] = []

    async def __aenter__(self) -> HeadlessChromium:
        import aiohttp

        self.profile = tempfile.mkdtemp(prefix="flux_async_chromium_")
        self.process = subprocess.Popen(
            [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        port = await asyncio.to_thread(self._devtools_port)
        self.http = aiohttp.ClientSession()
        self.base = f"http://127.0.0.1:{port}"
        return self

    def _devtools_port(self) -> int:
        lines = []
        assert self.process is not None and self.process.stderr is not None  # started with stderr=PIPE
        for line in self.process.stderr:
            lines.append(line)
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if found:
                return int(found.group(1))
        raise RuntimeError("Chromium exited before DevTools was listening:\n" + "".join(lines[-20:]))

    async def open(self, path: Path, screenshot: Path | None = None, settle_s: float = 0.3,
                   full_page: bool = False) -> Page:
        """Load a file at the browser's size; wait for the load event; optionally save a PNG of the viewport (or
        of the whole page)."""
        async with self.http.put(f"{self.base}/json/new?about:blank") as response:  # a fresh tab per page
            target = await response.json()
        websocket = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        session = _Session(websocket)
        self.sessions.append(session)
        page = Page(session)
        for domain in ("Runtime", "Log", "Page"):
            await session.call(f"{domain}.enable")
        await session.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                           deviceScaleFactor=1, mobile=False)
        await session.call("Page.navigate", url=Path(path).resolve().as_uri())
        while True:
            event = await asyncio.wait_for(session.events.get(), 60)
            if (text := _error_text(event)) is not None:
                page.errors.append(text)
            if event["method"] == "Page.loadEventFired":
                break
        await asyncio.sleep(settle_s)  # late console messages
        while not session.events.empty():
            if (text := _error_text(session.events.get_nowait())) is not None:
                page.errors.append(text)
        if screenshot is not None:
            options = {}
            if full_page:
                height = await page.evaluate("document.documentElement.scrollHeight")
                options = {"captureBeyondViewport": True,
                           "clip": {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}}
            shot = await session.call("Page.captureScreenshot", format="png", **options)
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        return page

    async def __aexit__(self, *exc) -> None:
        for session in self.sessions:
            await session.websocket.close()
            session.reader.cancel()
        await self.http.close()
        if self.process is not None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


async def _main(page: Path, shot: Path, full_page: bool) -> int:
    async with HeadlessChromium() as browser:
        opened = await browser.open(page, screenshot=shot, full_page=full_page)
    for error in opened.errors:
        print(error)
    return 1 if opened.errors else 0


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="screenshot an HTML file in headless Chromium at 1280x800")
    parser.add_argument("page", type=Path)
    parser.add_argument("screenshot", type=Path)
    parser.add_argument("--full-page", action="store_true")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(_main(arguments.page, arguments.screenshot, arguments.full_page)))
