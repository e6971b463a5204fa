"""The object-storage contract every backend meets.

Keys are `/`-separated relative paths chosen by the server (never from client input). Writes are
all-or-nothing: a reader never sees a half-written object, and a failed write leaves nothing behind.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> int: ...


class Storage(Protocol):
    def writer(self, key: str) -> AbstractContextManager[ObjectWriter]:
        """Stream an object in; it appears under `key` only when the block exits cleanly."""

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Stream an object out."""

    def local_path(self, key: str) -> AbstractContextManager[Path]:
        """A filesystem path holding the object for the block's duration (a download if remote)."""

    def iter_bytes(self, key: str, chunk_size: int = 1 << 16) -> Iterator[bytes]: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """The object's length in bytes; `FileNotFoundError` if there is none."""

    def move(self, source: str, target: str) -> None:
        """Give an object a new key without passing its bytes through this process.

        `FileNotFoundError` if `source` is missing; `target` is replaced if it exists.
        """

    def delete(self, key: str) -> None:
        """Remove one object; a missing object is not an error."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix/`; returns how many were removed."""

    def ping(self) -> None:
        """Raise (`OSError` or the backend's own error) unless objects can be written now.

        The readiness probe calls it every few seconds, so it must be cheap and leave nothing behind.
        """


class InvalidKey(ValueError):
    pass


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidKey(f"invalid storage key: {key!r}")
    return key
