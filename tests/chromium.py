"""Open a local HTML file in real headless Chromium and report what went wrong, over the DevTools protocol.

``render(html, screenshot)`` starts Debian's ``/usr/bin/chromium`` with a throw-away profile, loads the file,
collects console errors (``Runtime.consoleAPICalled`` of type error/assert), uncaught exceptions
(``Runtime.exceptionThrown``), browser log errors (``Log.entryAdded``) and every request that is not to a
``file:`` or ``data:`` URL (``Network.requestWillBeSent``), optionally runs a script in the loaded page (a test
clicking a table header and reading the rows back), saves a full-page screenshot, and stops the browser it
started (by pid).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0")


@dataclass
class Rendered:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    value: Any = None
    """What ``script`` evaluated to (JSON values), after the page loaded."""


def render(html: Path, screenshot: Path, timeout: float = 60, script: str | None = None) -> Rendered:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium; .ci/run does)")
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    browser = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _drive(_page_socket(profile, browser, timeout), html, screenshot, timeout, script)
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=20)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _page_socket(profile: Path, browser: subprocess.Popen, timeout: float) -> str:
    """The page target's websocket URL, from the port Chromium writes to ``DevToolsActivePort``."""
    deadline = time.monotonic() + timeout
    port_file = profile / "DevToolsActivePort"
    while not (port_file.is_file() and port_file.read_text().strip()):
        if browser.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"chromium did not start (exit {browser.poll()})")
        time.sleep(0.1)
    port = port_file.read_text().split()[0]
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [t for t in json.load(answer) if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        if time.monotonic() > deadline:
            raise RuntimeError("chromium has no page target")
        time.sleep(0.1)


def _drive(url: str, html: Path, screenshot: Path, timeout: float, script: str | None) -> Rendered:
    import websocket

    socket = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
    rendered = Rendered()
    counter = iter(range(1, 10**6))

    def call(method: str, **params) -> dict:
        ident = next(counter)
        socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            _record(message, rendered)

    try:
        for domain in ("Runtime", "Log", "Page", "Network"):
            call(f"{domain}.enable")
        call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        call("Page.navigate", url=html.resolve().as_uri())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(socket.recv())
            _record(message, rendered)
            if message.get("method") == "Page.loadEventFired":
                break
        call("Runtime.evaluate", expression="new Promise(r => setTimeout(r, 300))", awaitPromise=True)
        if script is not None:
            answer = call("Runtime.evaluate", expression=script, returnByValue=True, awaitPromise=True)
            if "exceptionDetails" in answer:
                raise RuntimeError(f"script failed in the page: {answer['exceptionDetails']}")
            rendered.value = answer["result"].get("value")
        size = call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 12000), "scale": 1}
        shot = call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        rendered.screenshot = screenshot
    finally:
        socket.close()
    return rendered


def _record(message: dict, rendered: Rendered) -> None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        rendered.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in
                                                      params.get("args", [])))
    elif method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        rendered.errors.append("exception: " + str(details.get("exception", {}).get("description")
                                                   or details.get("text")))
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        rendered.errors.append("log: " + params["entry"].get("text", ""))
    elif method == "Network.requestWillBeSent":
        request_url = params.get("request", {}).get("url", "")
        if not request_url.startswith(("file:", "data:")):
            rendered.requests.append(request_url)
