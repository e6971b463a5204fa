"""The AssemblyAI backend's own behaviour: errors split into permanent and retryable, and the
pipeline around it (retry on a 5xx, fail without retry on a rejected key). The real SDK talks to
a fake AssemblyAI server on loopback."""

import wave
from collections.abc import Iterator
from pathlib import Path

import assemblyai as aai
import httpx
import pytest
from pydantic import SecretStr

from core.enums import ChunkStatus, JobStatus
from tests.conftest import create_user, load_job, speech, submit_file
from tests.fakes.assemblyai_server import INVALID_KEY, UNSUPPORTED, FakeAssemblyAI, serve
from worker import context
from worker.backends.assemblyai import AssemblyAI, group_words
from worker.backends.base import PermanentTranscriptionError, Word


@pytest.fixture
def fake() -> Iterator[FakeAssemblyAI]:
    with serve() as server:
        yield server


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "chunk.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000 * 5)
    return path


def backend(fake: FakeAssemblyAI, key: str | None = None, **kwargs) -> AssemblyAI:
    return AssemblyAI(key or fake.api_key, base_url=fake.base_url, poll_interval=0.01, **kwargs)


def test_a_chunk_is_uploaded_created_and_polled_with_the_language(fake, wav):
    result = backend(fake).transcribe(wav, "en")
    assert [r.route for r in fake.requests] == ["upload", "create", "poll", "poll"]
    create = next(r for r in fake.requests if r.route == "create")
    assert create.body["language_code"] == "en" and "language_detection" not in create.body
    assert create.body["audio_url"].startswith(fake.base_url)
    assert [s.text for s in result.segments] == [
        "And so, my fellow Americans, ask not what your country can do for you.",
        "Ask what you can do for your country.",
    ]
    assert aai.settings.base_url == "https://api.assemblyai.com"  # no global SDK state touched


def test_no_language_asks_the_api_to_detect_it(fake, wav):
    assert backend(fake).transcribe(wav, None).language == "en"
    create = next(r for r in fake.requests if r.route == "create")
    assert create.body["language_detection"] is True and "language_code" not in create.body


def test_an_invalid_key_is_permanent_with_a_clear_message(fake, wav):
    with pytest.raises(PermanentTranscriptionError) as error:
        backend(fake, key="wrong").transcribe(wav, "en")
    assert "rejected the API key (HTTP 401" in str(error.value)
    assert INVALID_KEY in str(error.value) and "VERBATIM_ASSEMBLYAI_API_KEY" in str(error.value)
    assert fake.count("create") == 0


def test_audio_the_provider_cannot_decode_is_permanent_with_its_message(fake, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(PermanentTranscriptionError, match="could not transcribe the audio") as error:
        backend(fake).transcribe(text, "en")
    assert UNSUPPORTED in str(error.value)


@pytest.mark.parametrize(
    ("route", "status"), [("create", 500), ("upload", 503), ("poll", 502), ("create", 429)]
)
def test_server_errors_and_rate_limits_are_retryable(fake, wav, route, status):
    fake.fail_next(route, status)
    with pytest.raises(aai.TranscriptError) as error:
        backend(fake).transcribe(wav, "en")
    assert not isinstance(error.value, PermanentTranscriptionError)
    assert error.value.status_code == status
    backend(fake).transcribe(wav, "en")  # the next attempt goes through


def test_a_timeout_is_retryable(fake, wav):
    fake.delay_next("create", 1.0)
    with pytest.raises(httpx.TimeoutException):
        backend(fake, http_timeout=0.2).transcribe(wav, "en")


def test_words_are_grouped_at_sentence_ends_pauses_and_a_length_cap():
    words = [Word(0.0, 0.5, "Hi."), Word(0.6, 1.0, "one"), Word(2.5, 3.0, "two")]
    words += [Word(3.0 + i, 3.5 + i, "w") for i in range(40)]
    segments = group_words(words)
    assert [s.text for s in segments[:2]] == ["Hi.", "one"]
    assert all(s.end - s.start <= 30 for s in segments)
    assert [w for s in segments for w in s.words] == words
    assert group_words([]) == []


# --- through the pipeline ------------------------------------------------------------------------


@pytest.fixture
def user_id(sessions):
    return create_user(sessions)[0]


def use_assemblyai(worker_ctx, fake: FakeAssemblyAI, key: str):
    worker_ctx.settings = worker_ctx.settings.model_copy(
        update={
            "transcription_backend": "assemblyai",
            "assemblyai_api_key": SecretStr(key),
            "assemblyai_base_url": fake.base_url,
            "assemblyai_poll_seconds": 0.01,
            "assemblyai_chunk_seconds": 4.0,  # several chunks of jfk.flac, so offsets matter
            "task_retries": 1,
            "retry_backoff_seconds": [0],
        }
    )
    worker_ctx.queues._settings = worker_ctx.settings
    worker_ctx.transcriber_factory = context.transcriber_factory(worker_ctx.settings)
    worker_ctx._transcriber = None
    return worker_ctx


def test_a_job_completes_after_a_provider_5xx_with_words_on_its_timeline(
    worker_ctx, fake, user_id, run_worker
):
    ctx = use_assemblyai(worker_ctx, fake, fake.api_key)
    fake.fail_next("create", 500)
    job_id = submit_file(ctx, user_id, speech("jfk/jfk.flac"))
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert len(chunks) >= 2 and all(c.status == ChunkStatus.COMPLETED for c in chunks)
    assert sum(c.attempts for c in chunks) == len(chunks) + 1
    assert fake.count("create") == len(chunks) + 1
    assert job.detected_language == "en" and "country" in job.transcript_text
    for chunk in chunks:
        words = [w for s in chunk.segments for w in s["words"]]
        assert words
        assert all(chunk.start_seconds <= w["start"] <= w["end"] <= chunk.end_seconds for w in words)
    assert chunks[-1].segments[0]["start"] > chunks[-1].start_seconds > 0


def test_a_rejected_key_fails_the_job_without_retrying(worker_ctx, fake, user_id, run_worker):
    ctx = use_assemblyai(worker_ctx, fake, "wrong-key")
    job_id = submit_file(ctx, user_id, speech("jfk/jfk.flac"))
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.FAILED
    assert "chunk 0: AssemblyAI rejected the API key (HTTP 401" in job.error
    assert all(c.status == ChunkStatus.FAILED and c.attempts == 1 for c in chunks)
    assert fake.count("upload") == len(chunks) and fake.count("create") == 0
