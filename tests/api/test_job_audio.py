"""`GET /v1/jobs/{id}/audio`: the job's source file to its owner, whole or by HTTP range, read from
storage only as far as asked. Both stacks, on local storage and on S3 (moto's server)."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import pytest

from api.routers.job_audio import BLOCK_BYTES
from core.config import Settings
from storage.base import Storage
from storage.factory import make_storage
from tests.api.web_helpers import web_session
from tests.conftest import auth, create_job_row, create_user

SIZE = 2 * BLOCK_BYTES + 1000  # several blocks, the last one short


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    if request.param == "local":
        return settings
    endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
    on_s3 = {"storage_backend": "s3", "s3_endpoint_url": endpoint, "s3_bucket": bucket}
    return settings.model_copy(update=on_s3)


@pytest.fixture
def audio() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def owner(client, sessions, settings, audio) -> tuple[str, str]:
    """(API key, job id) of a user whose job has `audio` as its stored source file."""
    user_id, key = create_user(sessions)
    job_id = create_job_row(sessions, user_id, filename="talk.mp3")
    make_storage(settings).put_bytes(f"jobs/{job_id}/source.flac", audio)
    return key, job_id


def test_the_owner_gets_the_whole_file(client, owner, audio):
    key, job_id = owner
    response = client.get(f"/v1/jobs/{job_id}/audio", headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.content == audio
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "private"
    assert response.headers["content-type"] == "audio/mpeg"  # from the file name: the job has no type
    assert "content-range" not in response.headers


@pytest.mark.parametrize(
    "header, start, end",
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, SIZE - 1),
        ("bytes=-50", SIZE - 50, SIZE - 1),
        (f"bytes={BLOCK_BYTES - 10}-{BLOCK_BYTES + 9}", BLOCK_BYTES - 10, BLOCK_BYTES + 9),
        (f"bytes={SIZE - 10}-{SIZE + 500}", SIZE - 10, SIZE - 1),  # an end past the file: up to it
        (f"bytes=-{SIZE + 500}", 0, SIZE - 1),  # more than there is: all of it
        (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE - 1),
    ],
)
def test_a_range_gets_206_with_exactly_those_bytes(client, owner, audio, header, start, end):
    key, job_id = owner
    response = client.get(f"/v1/jobs/{job_id}/audio", headers={**auth(key), "Range": header})
    assert response.status_code == 206, response.text
    assert response.content == audio[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 10}", "bytes=-0"])
def test_a_range_beyond_the_end_gets_416(client, owner, header):
    key, job_id = owner
    response = client.get(f"/v1/jobs/{job_id}/audio", headers={**auth(key), "Range": header})
    assert response.status_code == 416, response.text
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert response.json()["error"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x-y", "bytes=-"])
def test_a_range_the_server_may_ignore_gets_the_whole_file(client, owner, audio, header):
    key, job_id = owner
    response = client.get(f"/v1/jobs/{job_id}/audio", headers={**auth(key), "Range": header})
    assert response.status_code == 200, response.text
    assert response.content == audio


def test_head_gives_the_headers_without_the_body(client, owner):
    key, job_id = owner
    whole = client.head(f"/v1/jobs/{job_id}/audio", headers=auth(key))
    assert whole.status_code == 200 and whole.content == b""
    assert whole.headers["content-length"] == str(SIZE) and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "audio/mpeg"
    part = client.head(f"/v1/jobs/{job_id}/audio", headers={**auth(key), "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.headers["content-range"] == f"bytes 10-19/{SIZE}"
    assert part.headers["content-length"] == "10"


def test_anyone_but_the_owner_gets_404(client, sessions, owner):
    _, job_id = owner
    _, stranger = create_user(sessions)
    _, admin = create_user(sessions, is_admin=True)
    for key in (stranger, admin):
        response = client.get(f"/v1/jobs/{job_id}/audio", headers={**auth(key), "Range": "bytes=0-9"})
        assert response.status_code == 404, response.text
        assert response.json() == {"error": "not_found", "detail": f"no job {job_id}"}
    assert client.get(f"/v1/jobs/{job_id}/audio").status_code == 401


def test_a_deleted_or_unknown_job_or_a_missing_file_gets_404(client, sessions, owner):
    key, job_id = owner
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth(key)).status_code == 204
    assert client.get(f"/v1/jobs/{job_id}/audio", headers=auth(key)).status_code == 404
    assert client.get("/v1/jobs/no-such-job/audio", headers=auth(key)).status_code == 404
    user_id = client.get("/v1/auth/me", headers=auth(key)).json()["id"]
    never_stored = create_job_row(sessions, user_id)
    missing = client.get(f"/v1/jobs/{never_stored}/audio", headers=auth(key))
    assert missing.status_code == 404 and "no longer stored" in missing.json()["detail"]


@pytest.mark.parametrize(
    "content_type, filename, served",
    [
        ("audio/ogg; codecs=opus", "talk.bin", "audio/ogg"),
        ("video/webm", "talk.webm", "video/webm"),
        ("text/html", "talk.flac", "audio/flac"),  # never a type a browser would open as a page
        ("text/html", "page.html", "application/octet-stream"),
        (None, "talk", "application/octet-stream"),
    ],
)
def test_the_type_is_the_jobs_or_its_file_names_audio_type(
    client, sessions, settings, content_type, filename, served
):
    user_id, key = create_user(sessions)
    job_id = create_job_row(sessions, user_id, filename=filename, content_type=content_type)
    make_storage(settings).put_bytes(f"jobs/{job_id}/source.flac", b"\x00" * 10)
    response = client.get(f"/v1/jobs/{job_id}/audio", headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == served


def test_the_web_session_cookie_plays_the_audio(client, sessions, settings, audio):
    session = web_session(client, "ada@example.com")
    job_id = create_job_row(sessions, session.body["user"]["id"], filename="talk.flac")
    make_storage(settings).put_bytes(f"jobs/{job_id}/source.flac", audio)
    response = client.get(f"/v1/jobs/{job_id}/audio", headers=session.reads(Range="bytes=0-9"))
    assert response.status_code == 206 and response.content == audio[:10]


class CountingStorage:
    """The app's storage, counting the bytes its seekable readers hand out."""

    def __init__(self, inner: Storage) -> None:
        self.inner, self.bytes_read = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextmanager
    def open_seekable(self, key: str) -> Iterator[BinaryIO]:
        with self.inner.open_seekable(key) as source:
            original = source.read

            def read(size: int = -1) -> bytes:
                data = original(size)
                self.bytes_read += len(data)
                return data

            source.read = read  # type: ignore[method-assign]
            yield source


def test_a_range_reads_only_its_own_bytes_from_storage(client, owner, audio):
    key, job_id = owner
    counting = CountingStorage(client.app.state.storage)
    client.app.state.storage = counting
    response = client.get(f"/v1/jobs/{job_id}/audio", headers={**auth(key), "Range": "bytes=1000-1099"})
    assert response.status_code == 206 and response.content == audio[1000:1100]
    assert counting.bytes_read == 100
