"""`GET /v1/jobs/{id}/download`: a redirect to a short-lived URL that serves the transcript, on
local storage (a URL the API signs and serves) and on S3 (a presigned GET on moto's server)."""

import uuid

import httpx
import pytest

from core import signing
from core.enums import JobStatus, Tier, TranscriptFormat
from core.signing import Purpose
from storage.factory import make_storage
from storage.keys import transcript_key
from tests.api import test_uploads
from tests.conftest import auth, create_job_row, create_user

# The same storage backends as the upload tests: local, and S3 where a test asks for `backend`.
backend = test_uploads.backend
settings = test_uploads.settings

TRANSCRIPTS = {
    TranscriptFormat.TXT: b"And so, my fellow Americans: ask not.\n",
    TranscriptFormat.SRT: b"1\n00:00:00,000 --> 00:00:02,000\nAnd so\n",
    TranscriptFormat.VTT: b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nAnd so\n",
    TranscriptFormat.JSON: b'{"text": "And so"}',
}


def make_job(sessions, settings, user_id, status=JobStatus.COMPLETED, **values):
    """A job in `status`; a completed one has its transcripts in storage, as `merge` leaves them."""
    job_id = create_job_row(sessions, user_id, status=status, **values)
    if status == JobStatus.COMPLETED:
        storage = make_storage(settings)
        for fmt, body in TRANSCRIPTS.items():
            storage.put_bytes(transcript_key(job_id, fmt.value), body)
    return job_id


def follow(client, settings, location):
    """GET the redirect's target without credentials: the API (local storage) or S3."""
    if location.startswith(settings.base_url + "/"):
        return client.get(location)
    return httpx.get(location)


@pytest.mark.parametrize("fmt", list(TranscriptFormat))
def test_the_download_redirect_serves_the_transcript(client, sessions, settings, backend, fmt):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = make_job(sessions, settings, user_id)

    response = client.get(
        f"/v1/jobs/{job_id}/download?format={fmt.value}", headers=auth(key), follow_redirects=False
    )
    assert response.status_code == 307, response.text
    assert response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    if backend == "local":
        assert location.startswith(f"{settings.base_url}/v1/downloads/")
    else:
        assert location.startswith(f"{settings.s3_endpoint_url}/{settings.s3_bucket}/jobs/{job_id}/")
        assert "Expires=300" in location or "X-Amz-Expires=300" in location

    served = follow(client, settings, location)
    assert served.status_code == 200, served.text
    assert served.content == TRANSCRIPTS[fmt]
    assert served.headers["content-type"] == fmt.media_type
    assert served.headers["content-disposition"] == f'attachment; filename="{job_id}.{fmt.value}"'


def test_txt_is_the_default_format(client, sessions, settings):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = make_job(sessions, settings, user_id)
    served = client.get(f"/v1/jobs/{job_id}/download", headers=auth(key))  # follows the redirect
    assert served.status_code == 200
    assert served.content == TRANSCRIPTS[TranscriptFormat.TXT]


def test_a_job_not_finished_failed_or_not_yours(client, sessions, settings):
    user_id, key = create_user(sessions, Tier.PRO)
    _, other = create_user(sessions, Tier.PRO)

    running = make_job(sessions, settings, user_id, JobStatus.PROCESSING, chunks_total=4, chunks_completed=1)
    response = client.get(f"/v1/jobs/{running}/download", headers=auth(key), follow_redirects=False)
    assert response.status_code == 202
    assert response.headers["retry-after"]
    assert response.json()["progress"] == {"chunks_total": 4, "chunks_completed": 1, "percent": 25.0}

    failed = make_job(sessions, settings, user_id, JobStatus.FAILED, error="not audio")
    response = client.get(f"/v1/jobs/{failed}/download", headers=auth(key), follow_redirects=False)
    assert response.status_code == 409
    assert "not audio" in response.json()["detail"]

    done = make_job(sessions, settings, user_id)
    for job_id in (done, str(uuid.uuid4())):
        response = client.get(f"/v1/jobs/{job_id}/download", headers=auth(other), follow_redirects=False)
        assert response.status_code == 404, response.text
    assert client.get(f"/v1/jobs/{done}/download", follow_redirects=False).status_code == 401
    bad_format = client.get(f"/v1/jobs/{done}/download?format=pdf", headers=auth(key), follow_redirects=False)
    assert bad_format.status_code == 422


def _location(client, key, job_id):
    response = client.get(f"/v1/jobs/{job_id}/download", headers=auth(key), follow_redirects=False)
    assert response.status_code == 307
    return response.headers["location"]


def test_download_links_expire(client, sessions, settings, monkeypatch):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = make_job(sessions, settings, user_id)
    issued = signing.clock()
    monkeypatch.setattr(signing, "clock", lambda: issued)
    location = _location(client, key, job_id)

    monkeypatch.setattr(signing, "clock", lambda: issued + settings.download_url_seconds - 1)
    assert client.get(location).status_code == 200
    monkeypatch.setattr(signing, "clock", lambda: issued + settings.download_url_seconds)
    response = client.get(location)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "expired" in response.json()["detail"]


def test_forged_and_misused_download_tokens_are_refused(client, sessions, settings):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = make_job(sessions, settings, user_id)
    token = _location(client, key, job_id).rsplit("/", 1)[1]
    payload, mac = token.split(".")
    signer = client.app.state.signer
    claims = {"k": transcript_key(job_id, "txt"), "name": "x.txt", "type": "text/plain"}
    forged = {
        "tampered mac": f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        "another key's payload": signer.sign(Purpose.DOWNLOAD, {**claims, "k": "jobs/x/source.flac"}, 60)[
            0
        ].split(".")[0]
        + f".{mac}",
        "an upload token": signer.sign(Purpose.UPLOAD, claims, 60)[0],
        "another secret": signing.sign(signing.derive_key("z" * 48), "download", claims, 2**40),
        "garbage": "garbage",
    }
    for name, bad in forged.items():
        response = client.get(f"/v1/downloads/{bad}")
        assert response.status_code == 403, (name, response.text)
        assert "signature" in response.json()["detail"], name
    # Nor does a download link upload anything.
    assert client.put(f"/v1/uploads/{token}", content=b"x").status_code == 403
    assert b"".join(make_storage(settings).iter_bytes(transcript_key(job_id, "txt"))) == TRANSCRIPTS["txt"]


def test_a_link_to_a_deleted_job_is_a_404(client, sessions, settings):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = make_job(sessions, settings, user_id)
    location = _location(client, key, job_id)
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth(key)).status_code == 204
    response = client.get(location)
    assert response.status_code == 404
    assert "no longer exists" in response.json()["detail"]
