"""`GET /v1/jobs/{id}/audio`: a job's own source file, for the web app's player beside the transcript.

Served through the API (not by redirect) so the session cookie authorizes it, and in HTTP ranges:
a player asks for the few bytes it needs to seek, and storage is read only there (ranged GETs on
S3), never the whole file.
"""

import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import CurrentUser, StorageDep, UoW
from api.fields import Text
from api.schemas import error_responses
from core.errors import AppError, NotFound
from repositories.jobs import JobRepository
from repositories.models import Job
from storage.base import Storage

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# The most read from storage at a time: also the size of one ranged GET on S3.
BLOCK_BYTES = 256 * 1024
# Only audio and video types, and only the type itself: the stored type is the uploader's word,
# and another (text/html) served from this origin could be opened as one of its pages.
_MEDIA_TYPE = re.compile(r"(?:audio|video)/[A-Za-z0-9.+-]+", re.IGNORECASE)
_SINGLE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_MEDIA: dict[str, Any] = {"audio/*": {}, "video/*": {}, "application/octet-stream": {}}
_HEADERS = {
    "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
    "Content-Length": {"schema": {"type": "integer"}},
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **error_responses(401, 404, 416, 422),
    200: {"description": "the whole file", "content": _MEDIA, "headers": _HEADERS},
    206: {
        "description": "the bytes the `Range` header asked for",
        "content": _MEDIA,
        "headers": {**_HEADERS, "Content-Range": {"schema": {"type": "string"}, "required": True}},
    },
}


class RangeNotSatisfiable(AppError):
    status_code = 416
    error = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"the file is {size} bytes long", headers={"Content-Range": f"bytes */{size}"})


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def byte_range(header: str | None, size: int) -> ByteRange | None:
    """The one range `header` asks for within `size` bytes; None for the whole file (no header,
    one that is malformed, or several ranges: RFC 9110 lets a server ignore it); 416 when it lies
    beyond the end."""
    match = _SINGLE_RANGE.fullmatch((header or "").replace(" ", ""))
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # `-n`: the last n bytes
        start, end = size - min(int(last), size), size - 1
        if int(last) == 0:
            raise RangeNotSatisfiable(size)
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, end)


def media_type(job: Job) -> str:
    for candidate in (job.content_type, mimetypes.guess_type(job.filename)[0]):
        if candidate and (found := _MEDIA_TYPE.match(candidate)):
            return found.group(0).lower()
    return "application/octet-stream"


def _read(storage: Storage, key: str, start: int, length: int) -> Iterator[bytes]:
    with storage.open_seekable(key) as source:
        source.seek(start)
        while length > 0 and (block := source.read(min(BLOCK_BYTES, length))):
            length -= len(block)
            yield block


@router.get("/{job_id}/audio", response_class=StreamingResponse, responses=_RESPONSES)
@router.head("/{job_id}/audio", response_class=StreamingResponse, responses=_RESPONSES)
def job_audio(
    job_id: Text,
    request: Request,
    user: CurrentUser,
    uow: UoW,
    storage: StorageDep,
    range_header: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
) -> Response:
    """The audio (or video) file the job was made from, yours only. `Range: bytes=a-b`, `a-` or
    `-n` gets `206` with those bytes; a range beyond the end gets `416`."""
    job = JobRepository(uow.session).get_for_owner(job_id, user.id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    try:
        size = storage.size(job.source_key)  # before the response starts: a 404, not a cut body
    except FileNotFoundError:
        raise NotFound(f"the audio of job {job_id} is no longer stored") from None
    part = byte_range(range_header, size)
    start, length = (0, size) if part is None else (part.start, part.length)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(length), "Cache-Control": "private"}
    if part is not None:
        headers["Content-Range"] = f"bytes {part.start}-{part.end}/{size}"
    status, kind = (200 if part is None else 206), media_type(job)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=kind)
    return StreamingResponse(_read(storage, job.source_key, start, length), status, headers, kind)
