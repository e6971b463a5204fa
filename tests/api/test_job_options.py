"""The transcription options of `POST /v1/jobs` (model, task, prompt, hotwords, timestamps, start and
end, speaker counts), as form fields and as JSON alike: stored on the job with the model resolved,
shown by `GET`, billed by the span they ask for, and every bad value a 422 naming its field.
`GET /v1/models` lists what the caller's tier may name."""

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.config import Settings
from core.db import session_scope
from core.enums import JobStatus, Priority, Tier
from core.options import MAX_HOTWORDS_CHARS, MAX_PROMPT_CHARS, MAX_SPEAKERS
from core.tiers import POLICIES
from repositories.jobs import JobRepository
from repositories.uploads import UploadRepository
from storage.factory import make_storage
from tests.conftest import auth, create_user, speech

JFK = speech("jfk/jfk.flac")  # 11.0 s
SHORT = speech("fleurs_en/fleurs-en-004.ogg")  # 4.3 s, 8 KB

DEFAULTS = {
    "model": "tiny.en",
    "task": "transcribe",
    "prompt": None,
    "hotwords": None,
    "timestamps": "segment",
    "start": None,
    "end": None,
    "speakers": None,
    "min_speakers": None,
    "max_speakers": None,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Two models: the bundled English-only tiny.en (the default) and a multilingual `base`. No
    worker runs here: the API only reads what each model can do."""
    return settings.model_copy(
        update={"models": f"tiny.en={settings.whisper_model},base=base", "assemblyai_api_key": SecretStr("k")}
    )


def put_upload(settings: Settings, sessions, user_id: str, path: Path) -> str:
    """What `POST /v1/uploads` and the client's PUT leave behind: the grant and the object."""
    key = f"uploads/{user_id}/{uuid.uuid4().hex}{path.suffix}"
    with session_scope(sessions) as session:
        expires_at = datetime.now(UTC) + timedelta(hours=1)
        UploadRepository(session).create(
            key=key, user_id=user_id, size=path.stat().st_size, expires_at=expires_at
        )
    make_storage(settings).put_bytes(key, path.read_bytes())
    return key


def submit(client, sessions, settings, user: tuple[str, str], transport: str, path: Path, **options: Any):
    """Submit `path` with `options` as multipart form fields, or as JSON naming a direct upload."""
    user_id, key = user
    if transport == "form":
        with path.open("rb") as f:
            fields = {name: str(value) for name, value in options.items()}
            return client.post("/v1/jobs", headers=auth(key), files={"file": (path.name, f)}, data=fields)
    object_key = put_upload(settings, sessions, user_id, path)
    body = json.dumps({"object_key": object_key, **options})  # NaN and Infinity as JavaScript writes them
    return client.post("/v1/jobs", headers={**auth(key), "Content-Type": "application/json"}, content=body)


def job_count(client, key: str) -> int:
    return int(client.get("/v1/jobs", headers=auth(key)).json()["total"])


def stored_options(sessions, job_id: str) -> dict[str, Any] | None:
    with session_scope(sessions) as session:
        job = JobRepository(session).get(job_id)
        assert job is not None
        return job.options


transports = pytest.mark.parametrize("transport", ["form", "json"])


# --- stored, shown ------------------------------------------------------------------------------


@transports
def test_every_option_is_stored_and_shown_with_the_job(client, sessions, settings, transport):
    user = create_user(sessions, Tier.PRO)
    given = {
        "model": "base",
        "task": "translate",
        "prompt": "Verbatim, Kennedy",
        "hotwords": "Americans country",
        "timestamps": "word",
        "start": 1.5,
        "end": 9.25,
        "min_speakers": 2,
        "max_speakers": 3,
    }

    response = submit(
        client, sessions, settings, user, transport, JFK, language="fr", mode="dialogue", **given
    )

    assert response.status_code == 202, response.text
    job = response.json()
    # Dialogue runs on the local backend (the fleet default) too: no backend named, none refused.
    assert (job["mode"], job["backend"], job["language"]) == ("dialogue", None, "fr")
    assert job["options"] == {**DEFAULTS, **given, "speakers": None}
    assert job["audio_duration_seconds"] == pytest.approx(7.75)  # the span, not the file's 11 s
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth(user[1])).json()["options"] == job["options"]
    assert stored_options(sessions, job["id"]) == given


@transports
def test_a_job_naming_no_options_stores_the_default_model_by_name(client, sessions, settings, transport):
    user = create_user(sessions, Tier.FREE)

    job = submit(client, sessions, settings, user, transport, SHORT).json()

    assert job["options"] == DEFAULTS
    assert job["language_probability"] is None
    assert stored_options(sessions, job["id"]) == {"model": "tiny.en"}
    # The fleet's default changes while the job waits: the job keeps the model it was given.
    settings.default_model = "base"
    again = client.get(f"/v1/jobs/{job['id']}", headers=auth(user[1])).json()
    assert again["options"]["model"] == "tiny.en"


def test_a_url_job_keeps_its_options_for_the_worker(client, sessions, settings):
    settings.webhook_allow_private = True
    _, key = create_user(sessions, Tier.PRO)
    body = {"audio_url": "http://127.0.0.1:9/talk.mp3", "start": 60, "end": 90.5, "timestamps": "word"}

    response = client.post("/v1/jobs", headers=auth(key), json=body)

    assert response.status_code == 202, response.text
    job = response.json()
    assert job["audio_duration_seconds"] is None  # known once the worker fetched the file
    assert stored_options(sessions, job["id"]) == {
        "model": "tiny.en",
        "start": 60,
        "end": 90.5,
        "timestamps": "word",
    }


def test_the_detected_language_is_shown_with_its_probability(client, sessions, settings):
    user = create_user(sessions, Tier.PRO)
    job_id = submit(client, sessions, settings, user, "form", SHORT).json()["id"]
    with session_scope(sessions) as session:
        jobs = JobRepository(session)
        jobs.update(jobs.get(job_id), detected_language="en", language_probability=0.97)

    job = client.get(f"/v1/jobs/{job_id}", headers=auth(user[1])).json()

    assert (job["language"], job["language_probability"]) == ("en", 0.97)


def test_a_prompt_of_wide_characters_up_to_the_bound_arrives_as_a_form_field(client, sessions, settings):
    user = create_user(sessions, Tier.PRO)
    prompt = "語" * MAX_PROMPT_CHARS  # 3 bytes each in UTF-8

    response = submit(client, sessions, settings, user, "form", SHORT, prompt=prompt)

    assert response.status_code == 202, response.text
    assert response.json()["options"]["prompt"] == prompt


# --- billing -------------------------------------------------------------------------------------


@transports
def test_only_the_span_asked_for_is_billed(client, sessions, settings, transport):
    user = create_user(sessions, Tier.PRO)

    # An end past the file's end is the file's end: 11 - 8 = 3 s.
    job = submit(client, sessions, settings, user, transport, JFK, start=8, end=100).json()

    assert job["audio_duration_seconds"] == pytest.approx(3.0)
    usage = client.get("/v1/usage", headers=auth(user[1])).json()
    assert usage["minutes_used"] == pytest.approx(3 / 60, abs=0.001)


@transports
def test_the_monthly_quota_counts_only_the_span(client, sessions, settings, monkeypatch, transport):
    monkeypatch.setitem(POLICIES, Tier.FREE, dataclasses.replace(POLICIES[Tier.FREE], monthly_minutes=1))
    user = create_user(sessions, Tier.FREE)
    with session_scope(sessions) as session:  # 55 of the month's 60 s are spent: 5 s left
        JobRepository(session).create(
            id=str(uuid.uuid4()),
            user_id=user[0],
            priority=Priority.LOW,
            filename="earlier.flac",
            size_bytes=1,
            source_key="jobs/earlier/source.flac",
            status=JobStatus.COMPLETED,
            audio_duration_seconds=55.0,
        )

    whole = submit(client, sessions, settings, user, transport, JFK)
    assert whole.status_code == 402, whole.text

    part = submit(client, sessions, settings, user, transport, JFK, start=2, end=6)
    assert part.status_code == 202, part.text
    assert part.json()["audio_duration_seconds"] == pytest.approx(4.0)


# --- refused -------------------------------------------------------------------------------------

ASSEMBLYAI = {"backend": "assemblyai"}
DIALOGUE = {"mode": "dialogue"}
INF, NAN = float("inf"), float("nan")

BAD = [
    ("model", {"model": "large-v9"}, "unknown model 'large-v9': use tiny.en, base"),
    ("task", {"task": "summarize"}, "unknown task 'summarize': use transcribe, translate"),
    ("task", {"task": "translate"}, "model 'tiny.en' is English-only (choose a multilingual model: base)"),
    ("language", {"language": "klingon"}, "unknown language 'klingon'"),
    ("prompt", {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, f"at most {MAX_PROMPT_CHARS} characters"),
    ("hotwords", {"hotwords": "x" * (MAX_HOTWORDS_CHARS + 1)}, f"at most {MAX_HOTWORDS_CHARS} characters"),
    ("timestamps", {"timestamps": "char"}, "unknown timestamps 'char': use segment, word"),
    ("start", {"start": "soon"}, "Input should be a valid number"),
    ("start", {"start": -1}, "greater than or equal to 0"),
    ("start", {"start": NAN}, "Input should be a finite number"),
    ("end", {"end": INF}, "Input should be a finite number"),
    ("end", {"start": 3, "end": 3}, "end (3 s) must be after start (3 s)"),
    ("start", {"start": 5}, "start (5 s) is not before the end of the audio (4.3 s)"),
    ("speakers", {**DIALOGUE, "speakers": 2.5}, "Input should be a valid integer"),
    ("speakers", {**DIALOGUE, "speakers": 0}, "greater than or equal to 1"),
    ("speakers", {**DIALOGUE, "speakers": True}, "Input should be a valid integer"),
    ("max_speakers", {**DIALOGUE, "max_speakers": MAX_SPEAKERS + 1}, f"less than or equal to {MAX_SPEAKERS}"),
    ("min_speakers", {**DIALOGUE, "min_speakers": "two"}, "Input should be a valid integer"),
    (
        "min_speakers",
        {**DIALOGUE, "min_speakers": 4, "max_speakers": 2},
        "min_speakers (4) is more than max_speakers (2)",
    ),
    (
        "speakers",
        {**DIALOGUE, "speakers": 2, "min_speakers": 1},
        "give the number of speakers or min_speakers, not both",
    ),
    ("speakers", {"speakers": 2}, "speakers: speaker counts need mode 'dialogue'"),
    (
        "max_speakers",
        {"mode": "mono", "max_speakers": 2},
        "max_speakers: speaker counts need mode 'dialogue'",
    ),
    ("model", {**ASSEMBLYAI, "model": "tiny.en"}, "model: the assemblyai backend has no such option"),
    ("prompt", {**ASSEMBLYAI, "prompt": "Kennedy"}, "prompt: the assemblyai backend has no such option"),
    (
        "hotwords",
        {**ASSEMBLYAI, "hotwords": "Kennedy"},
        "hotwords: the assemblyai backend has no such option",
    ),
    (
        "task",
        {**ASSEMBLYAI, "task": "translate"},
        "task 'translate': the assemblyai backend does not translate",
    ),
]


@transports
@pytest.mark.parametrize(("field", "options", "reason"), BAD, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD)])
def test_a_bad_option_is_a_422_naming_the_field(
    client, sessions, settings, transport, field, options, reason
):
    user = create_user(sessions, Tier.PRO)

    response = submit(client, sessions, settings, user, transport, SHORT, **options)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert field in detail and reason in detail, detail
    assert job_count(client, user[1]) == 0


@transports
def test_a_model_beyond_the_tier_is_403(client, sessions, settings, transport):
    user = create_user(sessions, Tier.FREE)

    response = submit(client, sessions, settings, user, transport, SHORT, model="base")

    assert response.status_code == 403, response.text
    assert response.json()["detail"] == "the free tier may use the model tiny.en; not 'base'"
    assert job_count(client, user[1]) == 0


# --- GET /v1/models ------------------------------------------------------------------------------


def test_models_lists_what_the_callers_tier_may_use(client, sessions):
    _, pro = create_user(sessions, Tier.PRO)
    _, free = create_user(sessions, Tier.FREE)

    def model(name: str, multilingual: bool, default: bool) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "verbatim",
            "multilingual": multilingual,
            "default": default,
        }

    assert client.get("/v1/models", headers=auth(pro)).json() == {
        "object": "list",
        "data": [model("tiny.en", False, True), model("base", True, False)],
    }
    assert client.get("/v1/models", headers=auth(free)).json()["data"] == [model("tiny.en", False, True)]
    assert client.get("/v1/models").status_code == 401


# --- GET /v1/languages ---------------------------------------------------------------------------


def test_every_listed_language_is_one_a_job_may_name_and_no_other_is(client, sessions, settings):
    listed = client.get("/v1/languages").json()["data"]
    names = [language["name"] for language in listed]
    assert names == sorted(names) and len(listed) == 100
    assert {"code": "de", "name": "German"} in listed and {"code": "yue", "name": "Cantonese"} in listed
    user = create_user(sessions, Tier.PRO)
    for code in ("de", "yue", "haw"):
        assert code in {language["code"] for language in listed}
        accepted = submit(client, sessions, settings, user, "json", JFK, language=code, model="base")
        assert accepted.status_code == 202, accepted.text
    refused = submit(client, sessions, settings, user, "json", JFK, language="xx", model="base")
    assert refused.status_code == 422 and "xx" in refused.json()["detail"]
