"""What the running processes print: `./scripts/run` (the launcher, the embedded Redis, the API
under uvicorn, a worker) is started for real, used with every kind of credential while a job runs
through it, and its whole output read.

Whoever can read the logs must not be able to fetch a transcript or act as a user: no signed URL
token, API key, password, access token or Redis password may appear, while the request lines and
the service's own events do (so the test cannot pass on an empty log).
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import psutil
import pytest

from core.config import Settings
from core.signing import Purpose, UrlSigner
from storage.keys import transcript_key
from storage.local import LocalStorage
from tests.api.auth_helpers import PASSWORD
from tests.conftest import speech
from tests.e2e.support import BOOTSTRAP_KEY, Service, start_service, stop, wait_until

pytestmark = pytest.mark.e2e

TRANSCRIPT = b"the transcript nobody else may read\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The launcher with a worker: migrations, Redis, the API; stopped before the output is read."""
    service = start_service(tmp_path_factory.mktemp("logs"), workers=1, VERBATIM_LOG_JSON="true")
    yield service
    stop(service)


def download_token(data: Path) -> str:
    """A real download URL's token, as GET /v1/jobs/{id}/download hands out for a finished job."""
    settings = Settings(environment="development", data_dir=data)
    key = transcript_key("job-logs", "txt")
    LocalStorage(settings.storage_dir).put_bytes(key, TRANSCRIPT)
    claims: dict[str, str | int] = {"k": key, "name": "job-logs.txt", "type": "text/plain"}
    token, _ = UrlSigner(settings).sign(Purpose.DOWNLOAD, claims, 300)
    return token


def use_every_credential(service: Service) -> list[str]:
    """Requests that carry each kind of secret; returns the secrets used."""
    with service.client() as admin, httpx.Client(base_url=service.url, timeout=30) as anonymous:
        created = anonymous.post(
            "/v1/auth/register", json={"email": "logs@example.com", "password": PASSWORD}
        )
        assert created.status_code == 202, created.text
        login = anonymous.post("/v1/auth/login", data={"username": "logs@example.com", "password": PASSWORD})
        assert login.status_code == 200, login.text
        access_token = login.json()["access_token"]
        ticket = admin.post("/v1/uploads", json={"filename": "talk.wav", "size": 4})
        assert ticket.status_code == 201, ticket.text
        upload_url = ticket.json()["upload_url"]
        assert anonymous.put(upload_url, content=b"RIFF").status_code == 200
        token = download_token(service.log.parent)
        fetched = anonymous.get(f"/v1/downloads/{token}")
        assert fetched.status_code == 200 and fetched.content == TRANSCRIPT
        # Credentials put where they do not belong: in the query string.
        query = {"api_key": BOOTSTRAP_KEY, "password": PASSWORD, "access_token": access_token}
        assert anonymous.get("/v1/jobs", params=query).status_code == 401
        assert admin.get("/v1/jobs", headers={"Authorization": f"Bearer {access_token}"}).status_code == 200
        # A job through the whole pipeline, its transcript fetched by the download URL it gives.
        with speech("jfk/jfk.flac").open("rb") as audio:
            submitted = admin.post("/v1/jobs", files={"file": ("jfk.flac", audio, "audio/flac")})
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()["id"]
        wait_until(lambda: admin.get(f"/v1/jobs/{job}").json()["status"] == "completed", 120, "the job")
        redirect = admin.get(f"/v1/jobs/{job}/download", params={"format": "txt"})
        assert redirect.status_code == 307, redirect.text
        transcript = anonymous.get(redirect.headers["location"])
        assert transcript.status_code == 200 and "country" in transcript.text
    job_token = redirect.headers["location"].rsplit("/", 1)[1]
    return [BOOTSTRAP_KEY, PASSWORD, access_token, upload_url.rsplit("/", 1)[1], token, job_token]


def redis_password(service: Service) -> str:
    """The embedded Redis's password, from the URL the launcher gave the API."""
    api = next(
        c for c in psutil.Process(service.process.pid).children() if "uvicorn" in " ".join(c.cmdline())
    )
    url: str = api.environ()["REDIS_URL"]
    password = url.split("://:", 1)[1].split("@", 1)[0]
    assert len(password) >= 32, url
    return password


@pytest.fixture(scope="module")
def output(service: Service) -> tuple[str, list[str]]:
    """Everything the processes printed, stdout and stderr, and the secrets that were in play."""
    secrets = [*use_every_credential(service), redis_password(service)]
    stop(service)
    return service.log.read_text(), secrets


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_no_credential_appears_in_any_line_the_processes_print(output: tuple[str, list[str]]) -> None:
    text, secrets = output
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:  # as in a query string
            assert form not in text, f"a credential was printed: …{secret[-6:]}"


def test_the_request_lines_are_there_with_their_tokens_redacted(output: tuple[str, list[str]]) -> None:
    requests = [line for line in json_lines(output[0]) if line["event"] == "http.request"]
    seen = {(line["method"], line["path"], line["status"]) for line in requests}
    assert ("PUT", "/v1/uploads/[redacted]", 200) in seen
    assert ("GET", "/v1/downloads/[redacted]", 200) in seen
    assert ("POST", "/v1/auth/login", 200) in seen
    query = "/v1/jobs?api_key=[redacted]&password=[redacted]&access_token=[redacted]"
    assert ("GET", query, 401) in seen


def test_the_api_logs_its_own_events_with_their_fields(output: tuple[str, list[str]]) -> None:
    lines = json_lines(output[0])
    granted = [line for line in lines if line["event"] == "upload.granted"]
    assert granted and granted[0]["key"].startswith("uploads/") and granted[0]["size"] == 4
    assert any(line["event"] == "upload.received" for line in lines)
    assert any(line["logger"] == "uvicorn.error" for line in lines)  # uvicorn's own lines, as JSON


def test_the_worker_logs_the_job_it_ran(output: tuple[str, list[str]]) -> None:
    """The worker's lines are in the output read for credentials, so they are checked too."""
    completed = [line for line in json_lines(output[0]) if line["event"] == "job.completed"]
    assert completed and completed[0]["worker"].startswith("verbatim-")
