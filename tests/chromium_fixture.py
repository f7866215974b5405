"""A real headless Chromium for the status page tests, driven over the DevTools protocol (CDP)
with aiohttp's websocket client - no Playwright.

Facts this relies on (measured, ``../shared/reference/operate.md`` §B): Debian's binary is
``/usr/lib/chromium/chromium`` (``/usr/bin/chromium`` is a wrapper script); as root it needs
``--no-sandbox``; ``--remote-debugging-port=0`` prints ``DevTools listening on ws://...`` on
stderr (sent to a file here, so a full pipe never blocks the browser; its dbus noise is
harmless); ``Emulation.setDeviceMetricsOverride`` gives an exact viewport (``--window-size``
counts the browser's UI). Each browser gets its own temporary profile, is closed with
``Browser.close`` and, if still running, killed by PID and reaped.

When Chromium is missing (``scripts/system-deps`` could not install it) :func:`chromium` skips
with that reason; an installed browser that does not start is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infrakit.testing import short_tempdir

BINARIES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
_DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")


class Page:
    """One tab: navigate, evaluate, wait for a condition, take a screenshot."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One CDP command; events arriving meanwhile are skipped."""
        self._next += 1
        ident = self._next
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = await asyncio.wait_for(self.ws.receive(), 30)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"CDP {method}: websocket closed ({message.type})")
            doc = json.loads(message.data)
            if doc.get("id") == ident:
                if "error" in doc:
                    raise AssertionError(f"CDP {method}: {doc['error']}")
                return dict(doc.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page: {expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0, what: str = "") -> Any:
        """Poll ``expression`` in the page every 20 ms until truthy (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or expression}")
            await asyncio.sleep(0.02)

    async def open(self, url: str, width: int = 1280, height: int = 800) -> None:
        await self.call("Page.enable")
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 600,
        )
        await self.call("Page.navigate", url=url)

    async def screenshot(self, path: Path, width: int = 1280) -> None:
        """The whole page at ``width`` (the viewport grows to the page's height first, so no
        scroll bar narrows it)."""
        metrics = await self.call("Page.getLayoutMetrics")
        height = int(metrics["cssContentSize"]["height"])
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


def _binary() -> str | None:
    for candidate in BINARIES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def _devtools_url(log: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _DEVTOOLS.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"chromium exited ({proc.returncode}): {log.read_text()[-2000:]}")
        time.sleep(0.02)  # noqa: TID251 - polling another process's log file with a deadline
    raise AssertionError(f"chromium printed no DevTools address within {timeout}s")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    """A headless Chromium with one page, closed (and reaped) afterwards."""
    binary = _binary()
    if binary is None:
        pytest.skip("chromium is not installed (scripts/system-deps installs Debian's chromium)")
    home = short_tempdir("chr")
    log = home / "chromium.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={home / 'profile'}",
                "about:blank",
            ],
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    try:
        browser_url = await asyncio.to_thread(_devtools_url, log, proc)
        port = re.search(r":(\d+)/", browser_url)
        assert port is not None, browser_url
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port.group(1)}/json/list") as answer:
                targets = await answer.json()
            page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(page_url, max_msg_size=0) as ws:
                yield Page(ws)
            with contextlib.suppress(Exception):
                async with http.ws_connect(browser_url, max_msg_size=0) as ws:
                    await ws.send_str(json.dumps({"id": 1, "method": "Browser.close"}))
                    await asyncio.wait_for(ws.receive(), 5)
    finally:
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
        shutil.rmtree(home, ignore_errors=True)
