"""A small Chrome DevTools protocol client for the browser tests: headless Chromium over
--remote-debugging-pipe (JSON messages ending in a NUL byte, commands on the browser's
file descriptor 3, replies and events on 4), so no port and no extra package is needed."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    """A Chromium-family browser: $NRKDEBLUR_BROWSER, else the first of BROWSERS on PATH."""
    named = os.environ.get("NRKDEBLUR_BROWSER")
    if named:
        return shutil.which(named)
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


class DevToolsError(Exception):
    pass


class Browser:
    """A headless browser with one page of width x height CSS pixels at device scale 1."""

    def __init__(self, executable: str, profile: Path, width: int = 1000, height: int = 900):
        reads, self._commands = os.pipe()
        self._replies, writes = os.pipe()
        # the browser's ends, moved above 10 so that putting them at 3 and 4 overwrites neither
        to_browser, from_browser = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (reads, writes))
        os.close(reads)
        os.close(writes)

        def as_fds_3_and_4() -> None:  # in the child, before exec (dup2 leaves them inheritable)
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        args = [executable, "--headless=new", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.log = profile / "browser.log"  # Chromium's own messages, for when it does not start
        profile.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            close_fds=False, preexec_fn=as_fds_3_and_4)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.attached = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.page(f"{domain}.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, attached: str | None = None, timeout: float = 20.0, **params) -> dict:
        """Send a command (to the browser, or to the page it is attached to with `attached`) and
        return its result; events that come first are kept in self.events."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if attached is not None:
            message["sessionId"] = attached
        try:
            os.write(self._commands, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise DevToolsError(f"the browser has exited (its messages: {self.log})") from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") != self._id:
                self.events.append(reply)
            elif "error" in reply:
                raise DevToolsError(f"{method}: {reply['error']}")
            else:
                return reply["result"]

    def page(self, method: str, **params) -> dict:
        return self.call(method, attached=self.attached, **params)

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise DevToolsError("no reply from the browser in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise DevToolsError(f"the browser closed the pipe (its messages: {self.log})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise DevToolsError(f"still false after {timeout} s: {expression}")
            time.sleep(0.05)

    def mouse(self, kind: str, x: float, y: float, held: bool = False) -> None:
        """A mouse event at (x, y) CSS pixels: kind is mousePressed, mouseMoved or mouseReleased;
        held: the left button is down during the event."""
        button = "none" if kind == "mouseMoved" and not held else "left"
        self.page("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, buttons=int(held),
                  clickCount=0 if kind == "mouseMoved" else 1)

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
        self.mouse("mouseMoved", *start)
        self.mouse("mousePressed", *start, held=True)
        for k in range(1, steps + 1):
            t = k / steps
            self.mouse("mouseMoved", start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t, held=True)
        self.mouse("mouseReleased", *end)

    def screenshot(self) -> tuple[np.ndarray, bytes]:
        """The page as seen: (H, W, 3) uint8 pixels and the PNG file."""
        png = base64.b64decode(self.page("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), png

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page reported so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"].get("exception", params["exceptionDetails"])))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"{params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.loadingFailed":
                found.append(f"failed to load: {params.get('errorText')}")
        return found

    def requested(self) -> list[str]:
        """Every URL the page asked for."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (DevToolsError, OSError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)
