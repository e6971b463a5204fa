"""A webhook endpoint on 127.0.0.1 that records every request and answers as scripted.

`answer(500, 500)` makes the next two requests get 500 (then 200 again); `delay_next(s)` holds the
next answer back (to trip the sender's timeout); a 3xx answer carries `Location: <url>/elsewhere`,
so a test can see whether the sender followed it.
"""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    _answers: list[int] = field(default_factory=list)
    _delays: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *statuses: int) -> None:
        """The next requests get these statuses, in order; after them, 200."""
        with self._lock:
            self._answers.extend(statuses)

    def delay_next(self, seconds: float) -> None:
        with self._lock:
            self._delays.append(seconds)

    def received(self, path: str = "/hook") -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def handle(self, request: Received) -> tuple[int, float]:
        with self._lock:
            self.requests.append(request)
            status = self._answers.pop(0) if self._answers else 200
            delay = self._delays.pop(0) if self._delays else 0.0
        return status, delay


class _Handler(BaseHTTPRequestHandler):
    receiver: WebhookReceiver

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, delay = self.receiver.handle(Received(self.command, self.path, headers, body))
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", f"{self.receiver.url.rsplit('/', 1)[0]}/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up waiting: what a timeout test wants

    do_POST = do_GET = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A receiver whose `url` (`http://127.0.0.1:<port>/hook`) is ready to take requests."""
    receiver = WebhookReceiver()
    handler = type("Handler", (_Handler,), {"receiver": receiver})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver", daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
