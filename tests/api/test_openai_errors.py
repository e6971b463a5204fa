"""The OpenAI-compatible routes refuse as OpenAI does: `{"error": {message, type, param, code}}` with
the status OpenAI's SDKs turn into their usual exceptions, and nothing left behind (no job in the
history, no file, no active-job slot held). The rest of the API keeps its own error shape."""

from datetime import UTC, datetime

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.routers.openai_audio import AwaitedResponse
from core.config import Settings
from core.db import session_scope
from core.enums import JobStatus, Priority, Tier
from core.tiers import POLICIES
from repositories.reservations import ReservationRepository
from tests.api.openai_helpers import JFK, openai_error, post
from tests.conftest import auth, create_job_row, create_user

# Shorter than JFK, so that a request that passes every other check is refused as too long to wait
# for: no request of this module waits for a job (no worker runs here).
SYNC_MAX_SECONDS = 5.0


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration)])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sync_max_audio_seconds": SYNC_MAX_SECONDS})


def nothing_left(
    client: TestClient, sessions: sessionmaker[Session], user: tuple[str, str], settings: Settings
) -> None:
    """No job in the caller's history, no active-job slot held, no file in storage."""
    user_id, key = user
    history = client.get("/v1/jobs", headers=auth(key)).json()
    assert history["total"] == 0, history
    with session_scope(sessions) as session:
        assert ReservationRepository(session).count_live(user_id, datetime.now(UTC)) == 0
    stored = (
        [p for p in settings.storage_dir.rglob("*") if p.is_file()] if settings.storage_dir.exists() else []
    )
    assert stored == []


def test_no_key_or_a_wrong_one_is_openais_401(client, sessions):
    for key in (None, "vbt_" + "x" * 40):
        response = post(client, key, model="whisper-1")
        openai_error(response, 401, "invalid_request_error", "invalid_api_key")
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"response_format": "xml"}, "response_format"),
        ({"temperature": "1.5"}, "temperature"),
        ({"temperature": "warm"}, "temperature"),
        ({"timestamp_granularities[]": ["word"]}, "timestamp_granularities"),
        (
            {"response_format": "verbose_json", "timestamp_granularities[]": ["word", "line"]},
            "timestamp_granularities",
        ),
        ({"stream": "true", "response_format": "srt"}, "stream"),
        ({"stream": "maybe"}, "stream"),
        ({"prompt": "x" * 1001}, "prompt"),
    ],
    ids=[
        "format",
        "temperature",
        "temperature-nan",
        "words-without-verbose",
        "granularity",
        "stream-srt",
        "stream",
        "prompt",
    ],
)
def test_a_refused_parameter_is_a_400_naming_it_and_leaves_nothing(client, sessions, settings, fields, param):
    user = _, key = create_user(sessions)
    response = post(client, key, model="whisper-1", **fields)
    code = "validation_error" if param == "prompt" else "invalid_value"
    openai_error(response, 400, "invalid_request_error", code, param)
    nothing_left(client, sessions, user, settings)


def test_the_services_own_checks_are_openais_400(client, sessions, settings):
    user = _, key = create_user(sessions)
    unknown = openai_error(
        post(client, key, model="large-v9"), 400, "invalid_request_error", "validation_error"
    )
    assert "unknown model 'large-v9'" in unknown and "tiny.en" in unknown
    language = openai_error(
        post(client, key, language="xx"), 400, "invalid_request_error", "validation_error"
    )
    assert "language" in language
    nothing_left(client, sessions, user, settings)


@pytest.mark.parametrize("model", ["whisper-1", "tiny.en"])
def test_translating_on_an_english_only_fleet_is_refused_naming_the_model(client, sessions, settings, model):
    user = _, key = create_user(sessions)
    message = openai_error(
        post(client, key, "translations", model=model), 400, "invalid_request_error", "validation_error"
    )
    # whisper-1 means the fleet's default model: here the English-only tiny.en.
    assert "model 'tiny.en' is English-only" in message
    nothing_left(client, sessions, user, settings)


def test_audio_longer_than_a_request_waits_for_points_to_post_v1_jobs(client, sessions, settings):
    user = _, key = create_user(sessions)
    message = openai_error(
        post(client, key, model="whisper-1"), 400, "invalid_request_error", "audio_too_long", "file"
    )
    assert "POST /v1/jobs" in message and "0.2 min long" in message
    nothing_left(client, sessions, user, settings)


def test_a_file_that_is_not_audio_is_a_400(client, sessions, settings, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio at all " * 100)
    user = _, key = create_user(sessions)
    response = post(client, key, path=notes, model="whisper-1")
    openai_error(response, 400, "invalid_request_error", "unsupported_media_type")
    nothing_left(client, sessions, user, settings)


def test_a_file_over_the_size_limit_is_a_413(client, sessions, settings, tmp_path):
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (settings.max_upload_bytes + 1))
    user = _, key = create_user(sessions)
    openai_error(post(client, key, path=big), 413, "invalid_request_error", "payload_too_large")
    nothing_left(client, sessions, user, settings)


def _job(sessions: sessionmaker[Session], user_id: str, status: JobStatus, seconds: float) -> None:
    create_job_row(sessions, user_id, priority=Priority.LOW, status=status, audio_duration_seconds=seconds)


def test_spent_minutes_are_openais_insufficient_quota_not_retried(client, sessions):
    user_id, key = create_user(sessions, Tier.FREE)
    _job(sessions, user_id, JobStatus.COMPLETED, POLICIES[Tier.FREE].monthly_minutes * 60)
    response = post(client, key, model="whisper-1")
    openai_error(response, 429, "insufficient_quota", "insufficient_quota")
    # OpenAI's SDKs retry a 429 by themselves unless told not to; minutes do not come back in seconds.
    assert response.headers["x-should-retry"] == "false"


def test_too_many_active_jobs_is_a_rate_limit_429_with_retry_after(client, sessions):
    user_id, key = create_user(sessions, Tier.FREE)
    for _ in range(POLICIES[Tier.FREE].max_active_jobs):
        _job(sessions, user_id, JobStatus.PENDING, 10.0)
    response = post(client, key, model="whisper-1")
    openai_error(response, 429, "requests", "rate_limit_exceeded")
    assert int(response.headers["Retry-After"]) > 0
    assert "x-should-retry" not in response.headers  # a slot frees up: the SDK's retry may succeed


def test_the_rest_of_the_api_keeps_its_own_error_shape(client, sessions):
    assert client.get("/v1/jobs").json() == {
        "error": "unauthorized",
        "detail": "missing or invalid credentials",
    }
    _, key = create_user(sessions)
    with JFK.open("rb") as f:
        response = client.post(
            "/v1/jobs", headers=auth(key), files={"file": ("jfk.flac", f)}, data={"model": "x"}
        )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


def test_a_client_that_leaves_ends_the_wait_and_is_sent_nothing():
    sent: list[object] = []

    async def never() -> AwaitedResponse:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def receive() -> dict[str, str]:
        return {"type": "http.disconnect"}

    async def send(message: object) -> None:
        sent.append(message)

    async def answer() -> None:
        with anyio.fail_after(5):
            await AwaitedResponse(never, "job-1")({"type": "http"}, receive, send)

    anyio.run(answer)
    assert sent == []
