"""Headless Chromium for the browser tests: Debian's `chromium` (nothing is downloaded), started
with a profile of its own and driven over the DevTools protocol, one tab per browser."""

import base64
import itertools
import json
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.e2e.support import wait_until

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
]
Event = dict[str, Any]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise FileNotFoundError("no `chromium` on PATH (Debian package `chromium`)")
    return path


class Page:
    """One Chromium tab, driven over the DevTools protocol."""

    def __init__(self, devtools: ClientConnection) -> None:
        self._devtools = devtools
        self._ids = itertools.count(1)
        # Events that arrived while waiting for answers, for `wait_event` to look through.
        self._events: deque[Event] = deque(maxlen=1000)

    def call(self, method: str, *, reply_within: float = 30, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self._devtools.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + reply_within
        while True:  # events arrive in between; the answer carries our id
            message = json.loads(self._devtools.recv(timeout=max(0.0, deadline - time.monotonic())))
            if message.get("id") == call_id:
                assert "error" not in message, f"{method}: {message['error']}"
                result: dict[str, Any] = message["result"]
                return result
            if "method" in message:
                self._events.append(message)

    def wait_event(self, method: str, matches: Callable[[Event], bool], timeout: float = 30) -> Event:
        """The first event `method` whose params satisfy `matches`, seen already or still to come."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events:
                if event["method"] == method and matches(event["params"]):
                    self._events.remove(event)
                    return event
            left = deadline - time.monotonic()
            assert left > 0, f"timed out after {timeout} s waiting for {method}"
            self._events.append(json.loads(self._devtools.recv(timeout=left)))

    def take_events(self, method: str) -> list[Event]:
        """The events `method` that arrived so far, no longer kept."""
        taken = [e for e in self._events if e["method"] == method]
        self._events = deque((e for e in self._events if e["method"] != method), maxlen=self._events.maxlen)
        return taken

    def evaluate(
        self, expression: str, *, await_promise: bool = False, user_gesture: bool = False, timeout: float = 30
    ) -> Any:
        """The expression's value; `user_gesture` runs it as if the user had clicked (so that it
        may start playback or a download)."""
        result = self.call(
            "Runtime.evaluate",
            reply_within=timeout,
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
            userGesture=user_gesture,
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 30) -> Any:
        """Poll a JavaScript expression until it is truthy (the page fills itself in over XHR)."""
        try:
            return wait_until(lambda: self.evaluate(expression), timeout, what)
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; the page: {self.describe()}") from None

    def describe(self) -> str:
        """Where the page is and what it says, for a failure's message."""
        return str(self.evaluate("`${location.href}: ${document.body?.innerText.slice(0, 800)}`"))

    def open(self, url: str, lands_on: str | None = None) -> None:
        """Load `url`, and wait until the page is at its path (or at `lands_on`, where the page's
        script sends the browser on)."""
        path = lands_on or httpx.URL(url).path
        self.call("Page.navigate", url=url)
        self.wait_for(
            f"location.pathname === {json.dumps(path)} && document.readyState === 'complete'",
            f"{url} to load",
        )

    def click(self, selector: str) -> None:
        self.wait_for(f"document.querySelector({json.dumps(selector)}) !== null", f"{selector} to click")
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()", user_gesture=True)

    def type(self, selector: str, text: str) -> None:
        """Replace a field's text as typing would (input events included)."""
        field = json.dumps(selector)
        self.wait_for(f"document.querySelector({field}) !== null", f"{selector} to type into")
        self.evaluate(f"document.querySelector({field}).focus(); document.querySelector({field}).select()")
        self.call("Input.insertText", text=text)

    def choose_files(self, selector: str, *paths: Path) -> None:
        """Pick files in a file input, as its picker would (input and change events follow)."""
        field = self.call("Runtime.evaluate", expression=f"document.querySelector({json.dumps(selector)})")
        assert field["result"].get("objectId"), f"no {selector}"
        files = [str(p.resolve()) for p in paths]
        self.call("DOM.setFileInputFiles", files=files, objectId=field["result"]["objectId"])

    def set_viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path


@contextmanager
def chromium(workdir: Path) -> Iterator[Page]:
    """A headless Chromium with a fresh profile under `workdir`, stopped on leaving."""
    profile = workdir / "chromium-profile"
    process = subprocess.Popen(
        [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "chromium.log").open("wb"),
    )
    try:
        # Chromium writes the port it chose (and the browser's socket path) once it listens.
        port_file = profile / "DevToolsActivePort"
        port = wait_until(lambda: port_file.exists() and port_file.read_text().split("\n")[0], 30, "Chromium")
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        tab = next(t for t in targets if t["type"] == "page")
        with connect(tab["webSocketDebuggerUrl"], max_size=None) as devtools:
            yield Page(devtools)
    finally:
        process.terminate()
        process.wait(timeout=30)
