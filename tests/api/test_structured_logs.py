"""Log lines: a worker's name on every worker line, job and chunk on chunk events, no secrets."""

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.enums import Tier
from core.logging import FieldsFilter, JsonFormatter
from tests.api.auth_helpers import PASSWORD, account, login, make_key
from tests.conftest import auth, create_user, speech
from worker.main import parse_args, serve

Lines = Callable[[], list[dict[str, Any]]]
# The test's own HTTP client logs the URLs it calls; it is not part of the service.
CLIENT_LOGGERS = ("httpx", "httpcore")


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    """Every record logged during the test, at every level, as the JSON lines production writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)

    def lines() -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
        return [p for p in parsed if not p["logger"].startswith(CLIENT_LOGGERS)]

    yield lines
    root.removeHandler(handler)
    root.setLevel(level)
    for other in root.handlers:  # a worker binds its name on every root handler: unbind it
        for tag in [f for f in other.filters if isinstance(f, FieldsFilter)]:
            other.removeFilter(tag)


def submit(client, key: str, recording: str) -> str:
    path = speech(recording)
    response = client.post("/v1/jobs", headers=auth(key), files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_worker_lines_carry_the_worker_and_chunk_events_the_chunk(client, sessions, worker_ctx, log_lines):
    _, key = create_user(sessions, Tier.PRO)
    job_id = submit(client, key, "jfk/jfk.flac")
    first = len(log_lines())
    serve(worker_ctx, parse_args(["--burst", "--name", "w-logs-1"]))  # what `python -m worker.main` runs
    lines = log_lines()[first:]

    assert lines, "the worker logged nothing"
    assert {line.get("worker") for line in lines} == {"w-logs-1"}
    assert any(line["logger"].startswith("rq.") for line in lines)  # RQ's own lines are tagged too
    events = [line["event"] for line in lines]
    assert {"job.prepared", "chunk.transcribed", "job.completed"} <= set(events)
    for line in lines:
        if line["event"].startswith("chunk."):
            assert line["job_id"] == job_id and isinstance(line["chunk_index"], int), line
        if line["event"].startswith(("job.", "merge.")):
            assert line["job_id"] == job_id, line


def test_no_log_line_carries_a_credential_or_a_signed_url(client, sessions, run_worker, log_lines):
    _, token = account(client, "logs@example.com")
    key = make_key(client, token)["key"]
    job_id = submit(client, key, "jfk/jfk.flac")
    run_worker()
    assert client.get(f"/v1/jobs/{job_id}/transcript?format=srt", headers=auth(key)).status_code == 200
    assert client.get("/v1/jobs?q=jfk&limit=5", headers=auth(token)).status_code == 200
    # Refused credentials are logged as refusals, never echoed.
    wrong_password, forged_key = "not the password at all", "vbt_" + "x" * 40
    assert login(client, "logs@example.com", wrong_password).status_code == 401
    assert client.get("/v1/jobs", headers=auth(forged_key)).status_code == 401
    assert client.get("/v1/jobs", headers=auth(token + "x")).status_code == 401

    lines = log_lines()
    assert any(line.get("job_id") == job_id for line in lines)  # the capture did see the service
    text = "\n".join(json.dumps(line) for line in lines)
    for secret in (key, token, PASSWORD, wrong_password, forged_key):
        assert secret not in text
    assert not re.search(r"https?://[^\s\"']*\?", text), "a URL with a query string was logged"
    assert not re.search(r"(?i)x-amz-|signature=|[?&](sig|token|key)=", text)
