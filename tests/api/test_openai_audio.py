"""An OpenAI-compatible request waits for its job and answers as the job ends: the transcript in the
format asked for, a stream of each chunk's text as it is stored, or OpenAI's error when the job did
not complete. No worker runs here: the test moves the job along as the pipeline would, while the
request waits in another thread."""

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openai.types.audio import TranscriptionSegment
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.db import session_scope
from core.enums import Tier
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Job
from storage.factory import make_storage
from storage.keys import transcript_key
from tests import audio_builders as ab
from tests.api.openai_helpers import openai_error, post
from tests.conftest import auth, create_user

TEXTS = ["And so, my fellow Americans,", "ask not what your country can do for you."]
TEXT = " ".join(TEXTS)


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration)])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """Two seconds of audio: short enough to wait for, and nothing the test needs to hear."""
    path = tmp_path / "clip.wav"
    ab.write_wav(path, ab.silence(2.0))
    return path


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as executor:
        yield executor


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def submitted(
    pool: ThreadPoolExecutor, client: TestClient, sessions: sessionmaker[Session], clip: Path, **fields: Any
) -> tuple[Future[Any], str, str]:
    """A request waiting for its job, the job's id, and the caller's key."""
    user_id, key = create_user(sessions, Tier.FREE)
    waiting = pool.submit(post, client, key, "transcriptions", clip, model="whisper-1", **fields)

    def job_id() -> str | None:
        with session_scope(sessions) as session:
            return session.scalars(select(Job.id).where(Job.user_id == user_id)).first()

    found: str = eventually(job_id)
    time.sleep(1.0)  # a few polls of the job's events: the request must still be waiting
    assert not waiting.done(), waiting.result().text
    return waiting, found, key


def chunks_done(sessions: sessionmaker[Session], job_id: str, texts: list[str]) -> None:
    """The job's plan, one chunk per text, and each chunk transcribed, as workers store them."""
    with session_scope(sessions) as session:
        JobRepository(session).start_processing(job_id)
        plan = [
            {
                "chunk_index": i,
                "start_seconds": i,
                "end_seconds": i + 1,
                "audio_key": f"jobs/{job_id}/{i}.wav",
            }
            for i in range(len(texts))
        ]
        ChunkRepository(session).add_plan(job_id, plan)
    for index, text in enumerate(texts):
        with session_scope(sessions) as session:
            chunks = ChunkRepository(session)
            assert chunks.complete_once(job_id, index, text=text, segments=[], language="en", seconds=1.0)


def complete(sessions: sessionmaker[Session], settings: Settings, job_id: str) -> None:
    """What `merge` leaves: the transcript's json in storage, the job completed with its text."""
    segments = [
        {
            "id": i,
            "start": float(i),
            "end": i + 0.9,
            "text": text,
            "words": [
                {"start": i + 0.1 * n, "end": i + 0.1 * n + 0.05, "text": f" {w}"}
                for n, w in enumerate(text.split())
            ],
        }
        for i, text in enumerate(TEXTS)
    ]
    stored = {
        "text": TEXT,
        "language": "en",
        "language_probability": 0.9,
        "duration": 2.0,
        "segments": segments,
    }
    make_storage(settings).put_bytes(transcript_key(job_id, "json"), json.dumps(stored).encode())
    with session_scope(sessions) as session:
        jobs = JobRepository(session)
        assert jobs.complete(jobs.get(job_id), text=TEXT, detected_language="en")


def test_the_answer_comes_when_the_job_completes_as_an_ordinary_job_of_the_callers_tier(
    client, sessions, settings, pool, clip
):
    waiting, job_id, key = submitted(pool, client, sessions, clip)
    complete(sessions, settings, job_id)
    response = waiting.result(timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"text": TEXT, "usage": {"type": "duration", "seconds": 2.0}}
    assert response.headers["x-job-id"] == job_id
    job = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert job["status"] == "completed" and job["priority"] == "low"  # the free tier's
    assert job["options"]["model"] == "tiny.en"  # whisper-1: the fleet's default


def test_text_is_the_transcripts_text(client, sessions, settings, pool, clip):
    waiting, job_id, _ = submitted(pool, client, sessions, clip, response_format="text")
    complete(sessions, settings, job_id)
    response = waiting.result(timeout=10)
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == TEXT + "\n"


def test_verbose_json_has_the_segments_and_words_asked_for(client, sessions, settings, pool, clip):
    fields = {"response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"]}
    waiting, job_id, _ = submitted(pool, client, sessions, clip, **fields)
    complete(sessions, settings, job_id)
    body = waiting.result(timeout=10).json()
    assert (body["task"], body["language"], body["duration"], body["text"]) == ("transcribe", "en", 2.0, TEXT)
    assert [w["word"] for w in body["words"]] == TEXT.split()
    assert body["words"][0] == {"word": "And", "start": 0.0, "end": 0.05}
    assert [(s["id"], s["start"], s["text"]) for s in body["segments"]] == [
        (0, 0.0, TEXTS[0]),
        (1, 1.0, TEXTS[1]),
    ]
    assert set(body["segments"][0]) == set(TranscriptionSegment.model_fields)  # what OpenAI's SDK reads


def test_a_stream_sends_each_chunks_text_then_the_whole_text(client, sessions, settings, pool, clip):
    waiting, job_id, _ = submitted(pool, client, sessions, clip, stream="true")
    chunks_done(sessions, job_id, TEXTS)
    complete(sessions, settings, job_id)
    response = waiting.result(timeout=10)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events == [
        {"type": "transcript.text.delta", "delta": TEXTS[0]},
        {"type": "transcript.text.delta", "delta": " " + TEXTS[1]},
        {"type": "transcript.text.done", "text": TEXT},
    ]


def test_a_job_that_fails_is_openais_500_which_the_sdk_is_told_not_to_retry(client, sessions, pool, clip):
    waiting, job_id, _ = submitted(pool, client, sessions, clip)
    with session_scope(sessions) as session:
        jobs = JobRepository(session)
        assert jobs.fail(jobs.get(job_id), "the audio could not be decoded")
    response = waiting.result(timeout=10)
    message = openai_error(response, 500, "server_error", "job_failed")
    assert job_id in message and "the audio could not be decoded" in message
    # Every retry would be another job, failing as this one did.
    assert response.headers["x-should-retry"] == "false"


def test_a_job_canceled_while_waited_for_is_a_409_not_retried(client, sessions, pool, clip):
    waiting, job_id, key = submitted(pool, client, sessions, clip)
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key)).status_code == 200
    response = waiting.result(timeout=10)
    openai_error(response, 409, "invalid_request_error", "job_canceled")
    assert response.headers["x-should-retry"] == "false"


def test_a_stream_whose_job_fails_ends_with_an_error_event(client, sessions, pool, clip):
    waiting, job_id, _ = submitted(pool, client, sessions, clip, stream="true")
    with session_scope(sessions) as session:
        jobs = JobRepository(session)
        assert jobs.fail(jobs.get(job_id), "out of memory")
    frames = waiting.result(timeout=10).text.strip().split("\n\n")
    assert frames[-1].splitlines()[0] == "event: error"
    error = json.loads(frames[-1].splitlines()[1][6:])["error"]
    assert error["type"] == "server_error" and "out of memory" in error["message"]
