"""Transcript downloads by redirect: the bytes come from storage, not through an API worker.

`GET /v1/jobs/{id}/download` answers 307 to a short-lived URL: S3's presigned GET, or (local
storage) `GET /v1/downloads/{token}`, served below without Authorization (the signed token is the
credential, like S3's presigned URL), so a browser or `curl -L` can follow it.
"""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from api.deps import CurrentUser, SettingsDep, SignerDep, StorageDep, UoW
from api.fields import Text
from api.schemas import JobOut, error_responses
from core.config import Settings
from core.enums import JobStatus, TranscriptFormat
from core.errors import Conflict, NotFound
from core.signing import DOWNLOAD_PATH, Purpose
from repositories.jobs import JobRepository
from storage.base import Storage
from storage.keys import transcript_key

router = APIRouter(tags=["jobs"])


@router.get(
    "/v1/jobs/{job_id}/download",
    status_code=307,
    # The redirect has no body, so the schema gives its 307 no content type.
    response_class=RedirectResponse,
    responses={
        **error_responses(401, 404, 409, 422, 503),
        202: {"model": JobOut, "description": "not completed yet; progress"},
        307: {
            "description": "a URL serving the transcript for a few minutes",
            "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
        },
    },
)
def download_transcript(
    job_id: Text,
    user: CurrentUser,
    uow: UoW,
    storage: StorageDep,
    settings: SettingsDep,
    format: TranscriptFormat = TranscriptFormat.TXT,
) -> Response:
    """Redirect to the transcript, valid for `VERBATIM_DOWNLOAD_URL_SECONDS`; `202` with progress
    while the job runs, `409` if it failed."""
    job = JobRepository(uow.session).get_for_owner(job_id, user.id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    if job.status == JobStatus.FAILED:
        raise Conflict(f"the job failed: {job.error}")
    if job.status != JobStatus.COMPLETED:
        body = JobOut.of(job).model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers={"Retry-After": "5"})
    url = _download_url(storage, settings, job.id, format)
    # no-store: the URL expires within minutes, so no cache should hand it out later.
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})


def _download_url(storage: Storage, settings: Settings, job_id: str, fmt: TranscriptFormat) -> str:
    key, name = transcript_key(job_id, fmt.value), f"{job_id}.{fmt.value}"
    return storage.presign_download(
        key, settings.download_url_seconds, download_as=name, media_type=fmt.media_type
    )


@router.get(
    DOWNLOAD_PATH + "/{token}",
    response_class=StreamingResponse,
    responses={
        **error_responses(403, 404),
        200: {"content": {f.media_type.split(";")[0]: {} for f in TranscriptFormat}},
    },
)
def serve_download(token: str, storage: StorageDep, signer: SignerDep) -> StreamingResponse:
    """The download URL of local storage; 403 once expired or if altered in any way."""
    grant = signer.verify(Purpose.DOWNLOAD, token)
    key, name, media_type = str(grant["k"]), str(grant["name"]), str(grant["type"])
    try:
        size = storage.size(key)  # before the response starts: a missing file is a 404, not a cut body
    except FileNotFoundError:
        raise NotFound("this file no longer exists (the job was deleted)") from None
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Content-Length": str(size),
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(storage.iter_bytes(key), media_type=media_type, headers=headers)
