"""Schemathesis over the API's own OpenAPI schema: every operation, as an admin and as a free user,
with generated valid and invalid requests. No answer may be a server error, and every answer must
be one the schema documents: its status, content type, headers and body, and `Allow` on a 405.

Bounded and deterministic: a fixed seed, derandomized generation and a few examples per operation,
so a failure here reproduces on every run (each is reported with the `curl` that reproduces it).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Receive, Scope, Send

from core.config import Settings
from core.enums import JobStatus, Tier, TranscriptFormat
from storage.factory import make_storage
from storage.keys import transcript_key
from tests.conftest import auth, create_job_row, create_user

# Examples per operation in the fuzzing phase. The coverage phase adds its own fixed set of
# boundary and malformed requests (not bounded by this), which is where most findings come from.
MAX_EXAMPLES = 15

# Disabled: `positive_data_acceptance` expects any request the schema allows to succeed, but what
# the schema cannot say is checked too: an upload must decode as audio (415), an email may be
# registered already, a webhook URL must not point at a private address (422).
CHECKS_OFF = ("positive_data_acceptance",)

# The job routes that read one job (`GET /v1/jobs/{job_id}...`) are given a completed job of the
# caller, so their 200 and 307 answers are checked too, not only their 404. Cancel, retry and
# delete get generated ids (404s): they would end that job before the reads reach it.
READ_ONE_JOB = r"^/v1/jobs/\{job_id\}"


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration)])
def stack(request: pytest.FixtureRequest) -> str:
    """PostgreSQL and Redis only: PostgreSQL is the stricter of the two databases (it refuses what
    SQLite takes, such as a NUL character), and one stack keeps this test within a minute or so."""
    return str(request.param)


@dataclass
class Findings:
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tested: set[str] = field(default_factory=set)
    answers: set[tuple[str, int]] = field(default_factory=set)  # (operation, status) seen

    def record(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.ScenarioFinished) and event.is_test_scenario:
            if event.status != Status.SKIP and event.label:  # a stateful scenario has no label
                self.tested.add(event.label)
                for interaction in event.recorder.interactions.values():
                    if interaction.response is not None:
                        self.answers.add((event.label, interaction.response.status_code))
            self._record_failures(event)
        elif isinstance(event, events.NonFatalError):
            self.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            self.errors.append(f"fatal: {event.exception!r}")

    def _record_failures(self, event: events.ScenarioFinished) -> None:
        for checks in event.recorder.checks.values():
            for check in checks:
                if check.status == Status.FAILURE and check.failure_info is not None:
                    failure = check.failure_info.failure
                    self.failures.append(
                        f"{event.label} [{check.name}] {failure.title}: {failure.message}\n"
                        f"    {check.failure_info.code_sample}"
                    )


def without_lifespan(app: FastAPI) -> Any:
    """The app for schemathesis to call in process. The test client runs the app's lifespan (and
    ends it with the test); schemathesis would start another and keep it until the process exits."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)

    return asgi


def completed_job(sessions: sessionmaker[Session], settings: Settings, user_id: str) -> str:
    """A completed job of the user with its transcripts in storage, as `merge` leaves them. Made
    an hour from now: the admin's run sends `DELETE /v1/admin/jobs?older_than_days=0`, which purges
    every job finished before it, and this one must stay for the reads that come after."""
    job_id = create_job_row(
        sessions, user_id, status=JobStatus.COMPLETED, created_at=datetime.now(UTC) + timedelta(hours=1)
    )
    storage = make_storage(settings)
    for fmt in TranscriptFormat:
        storage.put_bytes(transcript_key(job_id, fmt.value), b'{"text": "And so, my fellow Americans"}')
    return job_id


def fuzz(app: FastAPI, credential: str, job_id: str) -> Findings:
    config = SchemathesisConfig.from_dict(
        {
            "seed": 20240501,
            "workers": 1,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "headers": {"Authorization": f"Bearer {credential}"},
            "checks": {name: {"enabled": False} for name in CHECKS_OFF},
            "operations": [
                {
                    "include-path-regex": READ_ONE_JOB,
                    "include-method": "GET",
                    "parameters": {"job_id": job_id},
                }
            ],
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", without_lifespan(app), config=config)
    findings = Findings()
    for event in schemathesis.engine.from_schema(schema).execute():
        findings.record(event)
    operations = {result.ok().label for result in schema.get_all_operations()}
    assert findings.tested == operations, f"operations not tested: {sorted(operations - findings.tested)}"
    return findings


@pytest.fixture
def app(client: TestClient) -> Iterator[FastAPI]:
    assert isinstance(client.app, FastAPI)
    yield client.app


@pytest.mark.parametrize(
    "tier, is_admin", [(Tier.ENTERPRISE, True), (Tier.FREE, False)], ids=["admin", "free"]
)
def test_every_operation_answers_as_the_schema_documents(
    app: FastAPI, sessions: sessionmaker[Session], settings: Settings, tier: Tier, is_admin: bool
) -> None:
    user_id, key = create_user(sessions, tier, is_admin=is_admin)
    findings = fuzz(app, key, completed_job(sessions, settings, user_id))

    assert not findings.errors, "\n".join(findings.errors)
    assert not findings.failures, f"{len(findings.failures)} failures:\n" + "\n".join(findings.failures)
    # The reads of the caller's job reached it: the successes were checked too, not only 404s.
    assert ("GET /v1/jobs/{job_id}/download", 307) in findings.answers
    assert ("GET /v1/jobs/{job_id}/transcript", 200) in findings.answers


# --- each finding, as one request ------------------------------------------------------------------


def test_a_405_allows_every_method_of_the_path(client: TestClient, sessions: sessionmaker[Session]) -> None:
    _, key = create_user(sessions)
    response = client.options("/v1/jobs/some-job", headers=auth(key))
    assert response.status_code == 405
    assert response.headers["Allow"] == "DELETE, GET"  # FastAPI routes take no HEAD
    assert response.json()["error"] == "method_not_allowed"


def test_a_json_body_that_is_not_utf8_is_422_like_any_malformed_json(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, key = create_user(sessions)
    headers = {**auth(key), "Content-Type": "application/json"}
    response = client.post("/v1/api-keys", content=b'{"name": "caf\xe9"}', headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


def test_a_number_is_no_moment(client: TestClient, sessions: sessionmaker[Session]) -> None:
    _, key = create_user(sessions)
    response = client.get("/v1/jobs", params={"created_before": "0.5"}, headers=auth(key))
    assert response.status_code == 422
    assert "created_before" in response.json()["detail"]


def test_the_schema_documents_the_bodies_the_api_sends(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    redirect = schema["paths"]["/v1/jobs/{job_id}/download"]["get"]["responses"]["307"]
    assert "content" not in redirect and "Location" in redirect["headers"]
    # Every 422 is the ErrorOut the handlers send, never FastAPI's own validation body.
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    webhooks = schema["paths"]["/v1/jobs/{job_id}/webhooks"]["get"]["responses"]["422"]
    assert webhooks["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}


def test_a_concrete_path_allows_its_own_methods_not_the_templates(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, key = create_user(sessions)
    response = client.options("/v1/jobs/stats", headers=auth(key))
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"  # not DELETE, of `/v1/jobs/{job_id}`


@pytest.mark.parametrize(
    "body", [{"size": "5"}, {"size": 5.0}, {"is_active": 0}], ids=["str", "float", "int"]
)
def test_a_number_or_boolean_of_another_json_type_is_422(
    client: TestClient, sessions: sessionmaker[Session], body: dict[str, Any]
) -> None:
    admin_id, key = create_user(sessions, is_admin=True)
    if "size" in body:
        response = client.post("/v1/uploads", json={"filename": "a.flac", **body}, headers=auth(key))
    else:
        response = client.patch(f"/v1/admin/users/{admin_id}", json=body, headers=auth(key))
    assert response.status_code == 422, response.text
