"""The object-storage contract every backend meets.

Keys are `/`-separated relative paths chosen by the server (never from client input). Writes are
all-or-nothing: a reader never sees a half-written object, and a failed write leaves nothing behind.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal, Protocol


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> int: ...


@dataclass(frozen=True)
class UploadForm:
    """How a client sends one object straight to storage, without credentials of its own.

    `PUT`: the file is the whole request body, sent with `headers`. `POST`: an HTML-form upload,
    `multipart/form-data` with every `fields` entry and then the file as the part named `file`.
    Either way storage itself refuses a body longer than the `max_bytes` it was made for.
    """

    url: str
    method: Literal["PUT", "POST"]
    expires_at: datetime
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class Storage(Protocol):
    def writer(self, key: str) -> AbstractContextManager[ObjectWriter]:
        """Stream an object in; it appears under `key` only when the block exits cleanly."""

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Stream an object out."""

    def open_seekable(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A seekable reader that fetches only the bytes read (ranged GETs on S3): for a file's
        header or index, never the whole object."""

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

    def list_folders(self, prefix: str, *, after: str | None = None, limit: int = 1000) -> list[str]:
        """The names of the folders directly under `prefix/` (`a` for the keys `prefix/a/...`), in the
        order of their keys, those after the folder `after` only, at most `limit` of them."""

    def presign_upload(self, key: str, max_bytes: int, seconds: int, content_type: str) -> UploadForm:
        """A form that lets its holder store one object of at most `max_bytes` at `key` for `seconds`."""

    def presign_download(self, key: str, seconds: int, *, download_as: str, media_type: str) -> str:
        """A URL serving `key` for `seconds` as an attachment named `download_as`, of `media_type`."""

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
