"""Direct uploads: the client sends a large file straight to storage, then submits its key.

`POST /v1/uploads` hands out the storage's presigned upload form (`Storage.presign_upload`): S3's
presigned POST, whose signed policy bounds the size, or (local storage) an API URL signed by
core/signing.py, which `PUT /v1/uploads/{token}` below streams into storage up to the same bound.
Either way the key is the server's (`uploads/{user}/{random}{ext}`), a user holds at most
`max_pending_uploads` of them, and `POST /v1/jobs {"object_key"}` checks the owner and size again
before it becomes a job.
"""

from collections.abc import AsyncIterator
from contextlib import ExitStack

import anyio
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api import quota
from api.deps import CurrentUser, SessionsDep, SettingsDep, SignerDep, StorageDep, UoW
from api.filenames import safe_extension, safe_filename
from api.schemas import UploadReceived, UploadRequest, UploadTicket, error_responses
from core.db import session_scope
from core.errors import Conflict, PayloadTooLarge, TooManyRequests
from core.logging import get_logger
from core.signing import UPLOAD_PATH, Purpose
from repositories.uploads import UploadRepository
from storage.base import Storage
from storage.keys import upload_key

log = get_logger(__name__)

router = APIRouter(prefix=UPLOAD_PATH, tags=["uploads"])

# What a client told "too many uploads waiting" should wait before asking again.
PENDING_RETRY_AFTER_SECONDS = 60

# Network chunks are gathered up to this much before each write, so a 1 GB body is not 16,000
# thread hops; it bounds what one upload holds in memory.
WRITE_BLOCK = 1 << 20


@router.post(
    "",
    status_code=201,
    response_model=UploadTicket,
    responses=error_responses(401, 402, 413, 422, 429, 503),
)
def create_upload(
    body: UploadRequest, user: CurrentUser, uow: UoW, storage: StorageDep, settings: SettingsDep
) -> UploadTicket:
    """Where to send one file of `size` bytes, valid for `VERBATIM_UPLOAD_URL_SECONDS`.

    Send it as the ticket says (`PUT` the whole body, or `POST` a form: see the schema), then
    `POST /v1/jobs` with `{"object_key": ...}`. The same limits as a multipart upload apply now
    (429 active jobs, 402 quota, 413 size) and again when the job is submitted; a body longer than
    `size` is refused; and at most `VERBATIM_MAX_PENDING_UPLOADS` uploads may wait unsubmitted (429).
    """
    current = quota.check_can_submit(uow.session, user)
    max_bytes = min(settings.max_upload_bytes, current.policy.max_upload_mb * 1024 * 1024)
    if body.size > max_bytes:
        raise PayloadTooLarge(f"the file is larger than the {max_bytes // (1024 * 1024)} MB limit")
    uploads = UploadRepository(uow.session)
    _check_pending(uploads.count_pending(user.id), settings.max_pending_uploads)
    key = upload_key(user.id, safe_extension(safe_filename(body.filename)))
    content_type = body.content_type or "application/octet-stream"
    form = storage.presign_upload(key, body.size, settings.upload_url_seconds, content_type)
    uploads.create(key=key, user_id=user.id, size=body.size, expires_at=form.expires_at)
    log.info("upload.granted", user_id=user.id, key=key, size=body.size, method=form.method)
    return UploadTicket.of(key, form)


def _check_pending(pending: int, limit: int) -> None:
    if pending >= limit:
        raise TooManyRequests(
            f"you have {pending} direct uploads not yet submitted as jobs; at most {limit} may wait. "
            "Submit them with POST /v1/jobs; unused ones are removed a day after their URL expires",
            retry_after=PENDING_RETRY_AFTER_SECONDS,
        )


_RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put(
    "/{token}",
    response_model=UploadReceived,
    responses=error_responses(403, 409, 413, 503),
    openapi_extra=_RAW_BODY,
)
async def receive_signed_upload(
    token: str, request: Request, storage: StorageDep, signer: SignerDep, sessions: SessionsDep
) -> UploadReceived:
    """The upload URL of local storage: the request body is the file. No Authorization header:
    the signed token is the credential. At most the size given to `POST /v1/uploads`; a body
    over it is refused with 413 and nothing is kept."""
    grant = signer.verify(Purpose.UPLOAD, token)
    key, limit = str(grant["k"]), int(grant["n"])
    if not await run_in_threadpool(_still_granted, sessions, key):
        # Submitted already (or swept): a second PUT would leave an object nothing refers to.
        raise Conflict("this upload was already submitted as a job; ask POST /v1/uploads for a new URL")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than the {limit} bytes this upload URL was made for")
    size = await _store_stream(storage, key, _blocks(request.stream(), limit))
    log.info("upload.received", key=key, size=size)
    return UploadReceived(object_key=key, size=size)


def _still_granted(sessions: sessionmaker[Session], key: str) -> bool:
    # A session of its own, closed before the body is read: no connection is held for the upload.
    with session_scope(sessions) as session:
        return UploadRepository(session).get(key) is not None


async def _blocks(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The body in blocks of about WRITE_BLOCK bytes; PayloadTooLarge as soon as it passes `limit`."""
    block, total = bytearray(), 0
    async for data in stream:
        total += len(data)
        if total > limit:
            raise PayloadTooLarge(f"the body is larger than the {limit} bytes this upload URL was made for")
        block += data
        if len(block) >= WRITE_BLOCK:
            yield bytes(block)
            block.clear()
    if block:
        yield bytes(block)


async def _store_stream(storage: Storage, key: str, blocks: AsyncIterator[bytes]) -> int:
    """Write the blocks to `key` in a worker thread; on any error the writer leaves nothing stored."""
    stack = ExitStack()
    writer = await anyio.to_thread.run_sync(stack.enter_context, storage.writer(key))
    size = 0
    try:
        async for block in blocks:
            size += await anyio.to_thread.run_sync(writer.write, block)
    except BaseException as exc:
        await anyio.to_thread.run_sync(stack.__exit__, type(exc), exc, exc.__traceback__)
        raise
    await anyio.to_thread.run_sync(stack.close)
    return size
