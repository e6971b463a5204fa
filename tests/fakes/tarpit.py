"""An HTTP tarpit on 127.0.0.1: it reads the request, then answers a byte at a time and never ends.

`trickle` (the default) starts a response and sends its header lines one byte per `interval`;
`continue` sends `100 Continue` after `100 Continue`, one per `interval`; `body` sends its headers
at once and then a body of a million bytes, one byte per `interval`. None ever finishes the
response, so only a client with a deadline of its own gets away. Each connection is recorded with
when it was opened and when the client closed it.
"""

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["trickle", "continue", "body"]


@dataclass
class Connection:
    opened_at: float
    closed_at: float | None = None  # time.monotonic() when the client closed it
    request: bytes = b""
    sent: int = 0  # bytes sent so far


@dataclass
class Tarpit:
    url: str = ""
    mode: Mode = "trickle"
    interval: float = 1.0
    connections: list[Connection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self, conn: socket.socket) -> None:
        record = Connection(opened_at=time.monotonic())
        with self._lock:
            self.connections.append(record)
        with conn:
            record.request = _read_head(conn)
            pieces = self._pieces()
            try:
                while True:
                    conn.sendall(next(pieces))
                    record.sent += 1
                    if _closed_by_peer(conn, self.interval):
                        break
            except OSError:
                pass  # reset by the client
        record.closed_at = time.monotonic()

    def _pieces(self) -> Iterator[bytes]:
        if self.mode == "continue":
            while True:
                yield b"HTTP/1.1 100 Continue\r\n\r\n"
        if self.mode == "body":
            yield b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"
            while True:
                yield b"\0"
        yield from (bytes([b]) for b in b"HTTP/1.1 200 OK\r\n")
        while True:
            yield from (bytes([b]) for b in b"X-Slow: still coming\r\n")

    def closed(self) -> list[Connection]:
        with self._lock:
            return [c for c in self.connections if c.closed_at is not None]


def _read_head(conn: socket.socket) -> bytes:
    """The request up to the end of its headers, and whatever part of the body came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        block = conn.recv(65536)
        if not block:
            break
        data += block
    return data


def _closed_by_peer(conn: socket.socket, wait: float) -> bool:
    """Wait `wait` seconds, or less if the client closes the connection (then True)."""
    readable, _, _ = select.select([conn], [], [], wait)
    if not readable:
        return False
    try:
        return conn.recv(65536) == b""
    except OSError:
        return True


@contextmanager
def tarpit(mode: Mode = "trickle", interval: float = 1.0) -> Iterator[Tarpit]:
    """A tarpit whose `url` (`http://127.0.0.1:<port>/hook`) takes connections until the block ends."""
    server = socket.create_server(("127.0.0.1", 0))
    pit = Tarpit(url=f"http://127.0.0.1:{server.getsockname()[1]}/hook", mode=mode, interval=interval)
    stopping = threading.Event()

    server.settimeout(0.05)  # so that the accepting thread sees `stopping`

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            threading.Thread(target=pit.serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, name="tarpit", daemon=True)
    thread.start()
    try:
        yield pit
    finally:
        stopping.set()
        thread.join(timeout=5)
        server.close()
