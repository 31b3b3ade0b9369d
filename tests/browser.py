"""A headless Chromium driven over the DevTools protocol, for tests that need a real browser.

The browser is found and started as ``tests/repo/test_site.py`` starts it to render pages
(Debian's ``chromium``, or whatever ``MINATTN_BROWSER`` names; ``HEADLESS``: no sandbox,
background networking off; a throw-away profile), plus ``--remote-debugging-pipe``:
commands and events are JSON messages ending in a NUL byte, written to the browser's file
descriptor 3 and read from its descriptor 4. Standard library only.

    with Browser(path) as browser:
        tab = browser.open(url)           # waits until the page says it is ready
        tab.evaluate("document.title")    # a JavaScript expression's value
        tab.press("ArrowRight"); tab.click(x, y); tab.box("document.body")
        tab.requests                       # every URL the page asked for
"""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADLESS = (  # no window, no sandbox (root in CI), and nothing fetched in the background
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
FLAGS = (*HEADLESS, "--hide-scrollbars", "--remote-debugging-pipe")
TIMEOUT = 60  # seconds for one answer of the browser (two busy cores: be patient)


def find_browser():
    """The browser's path: MINATTN_BROWSER's, or the first of BROWSERS installed, or None."""
    named = os.environ.get("MINATTN_BROWSER")
    if named:
        return shutil.which(named)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def require_browser(unchecked=""):
    """The browser's path; a skip saying why when there is none (a failure in CI).

    unchecked: what goes unchecked without a browser, for the skip's reason.
    """
    found = find_browser()
    if not found and os.environ.get("MINATTN_REQUIRE_BROWSER") == "1":
        pytest.fail("MINATTN_REQUIRE_BROWSER=1 but no chromium or chrome is installed")
    if not found:
        pytest.skip(
            "no headless browser installed (apt-get install chromium, or set MINATTN_BROWSER)"
            + (f": {unchecked}" if unchecked else "")
        )
    return found


class Browser:
    def __init__(self, path, width=1200, height=1000):
        self.profile = tempfile.mkdtemp(prefix="minattn-browser-")
        to_browser, self._commands = _pipe()
        self._answers, from_browser = _pipe()
        # the browser reads commands on fd 3 and writes answers on fd 4: a small Python
        # trampoline moves the pipe's ends there and becomes the browser
        trampoline = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.close(int(sys.argv[1])); os.close(int(sys.argv[2])); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        command = [
            path,
            *FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(to_browser), str(from_browser), *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_browser, from_browser),
        )
        os.close(to_browser)
        os.close(from_browser)
        self.size = (width, height)
        self._buffer, self._id, self.events = b"", 0, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._commands, self._answers):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method, params=None, session=None):
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def _read(self):
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._answers], [], [], deadline - time.monotonic())
            if not ready:
                raise TimeoutError(f"the browser did not answer within {TIMEOUT} s")
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url, ready="document.body && document.body.dataset.ready === 'true'"):
        """A new tab at ``url``, once the JavaScript expression ``ready`` is true."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        tab = Tab(self, session["sessionId"])
        tab.call("Network.enable")
        width, height = self.size
        tab.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        tab.call("Page.navigate", {"url": url})
        tab.wait_for(ready)
        return tab


class Tab:
    def __init__(self, browser, session):
        self.browser, self.session = browser, session

    def call(self, method, params=None):
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, condition, timeout=TIMEOUT):
        """Poll the JavaScript ``condition`` until it is true (errors while loading: not yet)."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                if self.evaluate(f"Boolean({condition})"):
                    return
            except RuntimeError as e:
                last = e
            time.sleep(0.05)
        raise TimeoutError(f"{condition} still not true after {timeout} s (last error: {last})")

    def box(self, element):
        """[left, top, width, height] in CSS pixels of the viewport, of a JavaScript element."""
        return self.evaluate(
            f"(() => {{ const r = ({element}).getBoundingClientRect();"
            f" return [r.left, r.top, r.width, r.height]; }})()"
        )

    @property
    def requests(self):
        """The URLs this tab asked for (the page, its images, anything it fetched)."""
        return [
            e["params"]["request"]["url"]
            for e in self.browser.events
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session
        ]

    def press(self, key):
        """One key press (keydown and keyup) on the focused element, e.g. "ArrowRight"."""
        codes = {"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40}
        for kind in ("rawKeyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": codes[key]},
            )

    def click(self, x, y):
        """A left click at (x, y) CSS pixels of the viewport."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            )

    def screenshot(self, path):
        data = self.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}
        )
        with open(path, "wb") as f:
            f.write(base64.b64decode(data["data"]))
        return path

    def close(self):
        target = self.call("Target.getTargetInfo")["targetInfo"]["targetId"]
        self.browser.send("Target.closeTarget", {"targetId": target})


def _pipe():
    """A pipe whose ends are numbered 10 or more: moving them to 3 and 4 clobbers neither."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return tuple(ends)
