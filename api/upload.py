"""Receive a multipart upload straight into storage, one network chunk at a time.

Starlette's `request.form()` would spool the whole file to a temporary file first and only then let
us look at it; parsing the stream ourselves writes each piece to its final storage object as it
arrives, stops at the size limit without reading the rest, and never holds the file in memory.
"""

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from api.fields import storable
from api.filenames import safe_extension, safe_filename
from core.errors import BadRequest, PayloadTooLarge, UnsupportedMedia
from core.options import MAX_PROMPT_CHARS
from storage.base import ObjectWriter, Storage

FILE_FIELD = "file"
# The longest option (`prompt`) in UTF-8 at its widest, 4 bytes a character: a value within the
# option's bound always arrives, to be checked (422) as its JSON twin is.
MAX_FIELD_BYTES = 4 * MAX_PROMPT_CHARS
# The form's parts besides the file are a handful of short options: whatever else is sent is
# bounded as it arrives, not after it is all read (a stream of small fields is not an upload).
# (python-multipart bounds each part's headers: 8 lines of 4 KiB at most.)
MAX_FIELDS = 16
MAX_FIELDS_BYTES = 16 * 1024
# What a body may carry beyond the file: fields, part headers, boundaries.
FORM_OVERHEAD_BYTES = 128 * 1024
# The width of `jobs.content_type` (RFC 6838 allows 127 characters each for a type and a subtype).
MAX_CONTENT_TYPE = 255


@dataclass
class ReceivedUpload:
    key: str = ""
    filename: str = ""
    content_type: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    # Every value of each field, in order: a field may come more than once (OpenAI's
    # `timestamp_granularities[]`); `fields` holds the last of each.
    field_values: dict[str, list[str]] = field(default_factory=dict)


class _Receiver:
    """python-multipart callbacks: the file part goes to a storage writer, small fields to a dict."""

    def __init__(self, storage: Storage, key_for: Callable[[str], str], max_bytes: int) -> None:
        self.upload = ReceivedUpload()
        self._storage, self._key_for, self._max_bytes = storage, key_for, max_bytes
        self._stack = ExitStack()
        self._headers: dict[str, str] = {}
        self._header_field = self._header_value = b""
        self._writer: ObjectWriter | None = None
        self._field: tuple[str, bytearray] | None = None
        self._fields = self._fields_bytes = 0

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._grow("_header_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._grow("_header_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _grow(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode("latin-1")
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name != FILE_FIELD:
            self._fields += 1
            if self._fields > MAX_FIELDS:
                raise BadRequest(f"the form has more than {MAX_FIELDS} fields besides `file`")
            self._field = (name, bytearray())
            return
        if self._writer is not None:
            raise BadRequest("send exactly one `file` field")
        self.upload.filename = safe_filename(options.get(b"filename", b"").decode("utf-8", "replace"))
        self.upload.content_type = _content_type(self._headers.get("content-type"))
        self.upload.key = self._key_for(safe_extension(self.upload.filename))
        self._writer = self._stack.enter_context(self._storage.writer(self.upload.key))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is not None:
            self._field[1].extend(data[start:end])
            if len(self._field[1]) > MAX_FIELD_BYTES:
                raise BadRequest(f"form field `{self._field[0]}` is too long")
            self._fields_bytes += end - start
            if self._fields_bytes > MAX_FIELDS_BYTES:
                raise PayloadTooLarge(f"the form's fields besides `file` are over {MAX_FIELDS_BYTES} bytes")
            return
        assert self._writer is not None
        self.upload.size += end - start
        if self.upload.size > self._max_bytes:
            raise PayloadTooLarge(f"the file is larger than the {self._max_bytes // (1024 * 1024)} MB limit")
        self._writer.write(data[start:end])

    def _part_end(self) -> None:
        if self._field is not None:
            name, value = self._field[0], self._field[1].decode("utf-8", "replace").strip()
            self.upload.fields[name] = value
            self.upload.field_values.setdefault(name, []).append(value)
            self._field = None

    def finish(self, exc: BaseException | None) -> None:
        if exc is None:
            self._stack.close()
        else:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)


def _content_type(raw: str | None) -> str | None:
    """The `file` part's Content-Type, kept with the job: 400 unless the database can take it."""
    if raw is None:
        return None
    if len(raw) > MAX_CONTENT_TYPE:
        raise BadRequest(f"the Content-Type of the `file` part is longer than {MAX_CONTENT_TYPE} characters")
    try:
        return storable(raw)
    except ValueError as exc:
        raise BadRequest(f"the Content-Type of the `file` part {exc}") from None


async def receive_upload(
    request: Request, storage: Storage, key_for: Callable[[str], str], max_bytes: int
) -> ReceivedUpload:
    """Stream the request's `file` part into storage under `key_for(extension)`.

    On any error nothing is left in storage. Parsing and writing run in a worker thread so the event
    loop only moves bytes.
    """
    boundary = _boundary(request)
    too_large = PayloadTooLarge(f"the file is larger than the {max_bytes // (1024 * 1024)} MB limit")
    # A chunked body states no length: the same bound is kept while it streams.
    body_limit = max_bytes + FORM_OVERHEAD_BYTES
    if int(request.headers.get("content-length") or 0) > body_limit:
        raise too_large
    receiver = _Receiver(storage, key_for, max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for data in request.stream():
            received += len(data)
            if received > body_limit:
                raise too_large
            await anyio.to_thread.run_sync(parser.write, data)
        parser.finalize()
    except BaseException as exc:
        await anyio.to_thread.run_sync(receiver.finish, exc)
        if isinstance(exc, MultipartParseError):
            raise BadRequest(f"malformed multipart body: {exc}") from exc
        raise
    await anyio.to_thread.run_sync(receiver.finish, None)
    if not receiver.upload.key:
        raise BadRequest("the form has no `file` field")
    return receiver.upload


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UnsupportedMedia("send the audio as multipart/form-data with a `file` field")
    return options[b"boundary"]
