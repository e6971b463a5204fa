"""The AssemblyAI backend's own behaviour: errors split into permanent and retryable, speaker
labels, a transcript collected again by id; and the pipeline around it (retry on a 5xx without
paying twice, fail without retry on a rejected key, per-job backends, dialogue jobs). The real SDK
talks to a fake AssemblyAI server on loopback."""

import json
import re
import wave
from collections import defaultdict
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path

import assemblyai as aai
import httpx
import pytest
from pydantic import SecretStr

from core.db import session_scope
from core.enums import Backend, ChunkStatus, JobStatus, Mode
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from storage.keys import transcript_key
from tests import audio_builders as ab
from tests.conftest import create_user, load_job, speech, submit_file
from tests.fakes.assemblyai_server import FIRST, INVALID_KEY, JFK, SECOND, UNSUPPORTED, FakeAssemblyAI, serve
from worker import context, tasks
from worker.backends.assemblyai import AssemblyAI, group_words
from worker.backends.base import HostedTranscriber, PermanentTranscriptionError, ProviderTranscriptGone, Word


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
    assert "speaker_labels" not in create.body
    assert create.body["audio_url"].startswith(fake.base_url)
    assert [s.text for s in result.segments] == [FIRST, SECOND]
    assert all(s.speaker is None and all(w.speaker is None for w in s.words) for s in result.segments)
    assert aai.settings.base_url == "https://api.assemblyai.com"  # no global SDK state touched


def test_speakers_turn_on_speaker_labels_and_label_every_segment_and_word(fake, wav):
    result = backend(fake).transcribe(wav, "en", speakers=True)
    assert next(r for r in fake.requests if r.route == "create").body["speaker_labels"] is True
    assert [(s.speaker, s.text) for s in result.segments] == [("A", FIRST), ("B", SECOND)]
    assert all(w.speaker == s.speaker for s in result.segments for w in s.words)


def test_a_submitted_transcript_is_collected_by_id_without_a_new_upload(fake, wav):
    transcript_id = backend(fake).submit(wav, "en")
    assert [r.route for r in fake.requests] == ["upload", "create"]
    again = backend(fake).collect(transcript_id)  # another instance, as a retry in another process
    assert [s.text for s in again.segments] == [FIRST, SECOND] and again.language == "en"
    assert fake.count("upload") == fake.count("create") == 1
    assert isinstance(backend(fake), HostedTranscriber)


def test_collecting_an_unknown_transcript_says_it_is_gone(fake):
    with pytest.raises(ProviderTranscriptGone, match="no transcript nope"):
        backend(fake).collect("nope")
    fake.fail_next("poll", 404)
    with pytest.raises(ProviderTranscriptGone):
        backend(fake).collect("nope")


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


def use_assemblyai(
    worker_ctx, fake: FakeAssemblyAI, key: str | None, *, default: bool = True, chunk_seconds: float = 4
):
    """Point the worker at the fake. `default=False` keeps `local` as the fleet default, so only
    jobs that name `assemblyai` use it; `key=None` leaves the service without a key. Chunks of 4 s
    by default: several chunks of jfk.flac, so offsets matter."""
    worker_ctx.settings = worker_ctx.settings.model_copy(
        update={
            "transcription_backend": "assemblyai" if default else "local",
            "assemblyai_api_key": SecretStr(key) if key else None,
            "assemblyai_base_url": fake.base_url,
            "assemblyai_poll_seconds": 0.01,
            "assemblyai_chunk_minutes": chunk_seconds / 60,
            "task_retries": 1,
            "retry_backoff_seconds": [0],
        }
    )
    worker_ctx.queues._settings = worker_ctx.settings
    if default:
        worker_ctx.transcriber_factory = context.transcriber_factory(worker_ctx.settings)
        worker_ctx._transcriber = None
    worker_ctx._others.clear()
    return worker_ctx


def submit(
    ctx, user_id, *, backend: Backend | None = None, mode: Mode = Mode.MONO, options=None, path=None
) -> str:
    """jfk.flac (or `path`) as a job with what the API records for `backend`, `mode` and `options`."""
    job_id = submit_file(ctx, user_id, path or speech("jfk/jfk.flac"))
    with session_scope(ctx.sessions) as session:
        jobs = JobRepository(session)
        jobs.update(jobs.get(job_id), backend=backend, mode=mode, options=options)
    return job_id


def rendered(ctx, job_id: str, fmt: str) -> str:
    with ctx.storage.open(transcript_key(job_id, fmt)) as f:
        return str(f.read().decode())


def remember(ctx, job_id: str, index: int, transcript_id: str) -> None:
    with session_scope(ctx.sessions) as session:
        ChunkRepository(session).remember_transcript(job_id, index, transcript_id)


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


def test_a_failed_poll_is_retried_without_paying_for_the_chunk_again(worker_ctx, fake, user_id, run_worker):
    ctx = use_assemblyai(worker_ctx, fake, fake.api_key)
    fake.fail_next("poll", 502)  # chunk 0's first poll, after its transcript was created
    job_id = submit_file(ctx, user_id, speech("jfk/jfk.flac"))
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert len(chunks) >= 2
    assert [c.attempts for c in chunks] == [2] + [1] * (len(chunks) - 1)
    # One upload and one transcript per chunk: the retry polled the transcript chunk 0 had made.
    assert fake.count("upload") == fake.count("create") == len(chunks)
    ids = [c.provider_transcript_id for c in chunks]
    assert None not in ids and len(set(ids)) == len(chunks)
    polled = [r.path.rsplit("/", 1)[-1] for r in fake.requests if r.route == "poll"]
    assert polled.count(ids[0]) == 3  # the failed poll, then processing, completed
    assert job.transcript_text == " ".join([JFK] * len(chunks))


def test_a_remembered_transcript_the_provider_lost_is_submitted_again(worker_ctx, fake, user_id):
    ctx = use_assemblyai(worker_ctx, fake, fake.api_key)
    job_id = submit_file(ctx, user_id, speech("jfk/jfk.flac"))
    assert tasks.prepare(job_id) == "prepared"
    remember(ctx, job_id, 0, "deleted-transcript")
    assert tasks.transcribe_chunk(job_id, 0) == "transcribed"
    _, chunks = load_job(ctx, job_id)
    assert chunks[0].status == ChunkStatus.COMPLETED and chunks[0].text == JFK
    assert chunks[0].provider_transcript_id not in (None, "deleted-transcript")
    assert [r.route for r in fake.requests] == ["poll", "upload", "create", "poll", "poll"]


def test_a_remembered_transcript_that_ended_in_error_fails_the_chunk_for_good(
    worker_ctx, fake, user_id, tmp_path
):
    ctx = use_assemblyai(worker_ctx, fake, fake.api_key)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all")
    errored = backend(fake).submit(not_audio, "en")
    job_id = submit_file(ctx, user_id, speech("jfk/jfk.flac"))
    assert tasks.prepare(job_id) == "prepared"
    remember(ctx, job_id, 0, errored)
    assert tasks.transcribe_chunk(job_id, 0) == "failed"
    _, chunks = load_job(ctx, job_id)
    assert chunks[0].status == ChunkStatus.FAILED and chunks[0].attempts == 1
    assert "could not transcribe the audio" in chunks[0].error and UNSUPPORTED in chunks[0].error
    assert fake.count("upload") == fake.count("create") == 1  # only the one made above


# --- per-job backends ----------------------------------------------------------------------------


def test_a_job_can_name_assemblyai_while_the_fleet_default_is_local(worker_ctx, fake, user_id, run_worker):
    ctx = use_assemblyai(worker_ctx, fake, fake.api_key, default=False)
    hosted = submit(ctx, user_id, backend=Backend.ASSEMBLYAI)
    local = submit(ctx, user_id)
    run_worker()
    job, chunks = load_job(ctx, hosted)
    assert job.status == JobStatus.COMPLETED, job.error
    # Cut at AssemblyAI's chunk length (4 s here), transcribed by the fake: its canned words per chunk.
    assert len(chunks) >= 2 and all(c.end_seconds - c.start_seconds <= 4.5 for c in chunks)
    assert job.transcript_text == " ".join([JFK] * len(chunks))
    assert fake.count("create") == len(chunks)
    local_job, local_chunks = load_job(ctx, local)
    assert local_job.status == JobStatus.COMPLETED, local_job.error
    assert len(local_chunks) == 1  # the local chunk length (30 s), and the model's own words
    assert "country" in local_job.transcript_text.lower() and local_job.transcript_text != JFK
    assert {c.provider_transcript_id for c in local_chunks} == {None}


def test_a_job_can_name_local_while_the_fleet_default_is_assemblyai(worker_ctx, fake, user_id, run_worker):
    ctx = use_assemblyai(worker_ctx, fake, fake.api_key)
    job_id = submit(ctx, user_id, backend=Backend.LOCAL)
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert len(chunks) == 1 and "country" in job.transcript_text.lower() and job.transcript_text != JFK
    assert fake.requests == []


def test_naming_assemblyai_on_a_service_without_its_key_fails_the_job_at_once(
    worker_ctx, fake, user_id, run_worker
):
    ctx = use_assemblyai(worker_ctx, fake, None, default=False)
    job_id = submit(ctx, user_id, backend=Backend.ASSEMBLYAI)
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.FAILED
    assert "this service has no AssemblyAI API key (VERBATIM_ASSEMBLYAI_API_KEY)" in job.error
    assert chunks and all(c.status == ChunkStatus.FAILED and c.attempts == 1 for c in chunks)
    assert fake.requests == []


# --- dialogue ------------------------------------------------------------------------------------


def test_a_dialogue_job_names_its_speakers_in_every_format(worker_ctx, fake, user_id, run_worker):
    ctx = use_assemblyai(worker_ctx, fake, fake.api_key)
    job_id = submit(ctx, user_id, mode=Mode.DIALOGUE, options={"speakers": 2})
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    n = len(chunks)
    assert n >= 2
    assert all(r.body["speaker_labels"] is True for r in fake.requests if r.route == "create")
    body = json.loads(rendered(ctx, job_id, "json"))
    # The fake hears the same exchange in every chunk, its first sentence from the provider's "A"
    # and its second from "B", in one voice (JFK's): the job's two speakers (`speakers=2`) keep
    # the two sentences apart in every chunk, whichever is which.
    said = [(s["speaker"], s["text"]) for s in body["segments"]]
    assert [text for _, text in said] == [FIRST, SECOND] * n
    assert all(
        a[0] != b[0] and {a[0], b[0]} == {"A", "B"} for a, b in zip(said[::2], said[1::2], strict=True)
    )
    assert rendered(ctx, job_id, "txt") == "".join(
        f"Speaker {u['speaker']}: {u['text']}\n" for u in body["utterances"]
    )
    # Captions are shaped (42 characters a line): every cue names its speaker, and the cues say
    # what the txt says, speaker by speaker.
    turns = [line.split(": ", 1) for line in rendered(ctx, job_id, "txt").splitlines()]
    for fmt, skip, voice in (("srt", 2, r"\[Speaker (\w)\] (.*)"), ("vtt", 1, r"<v Speaker (\w)>(.*)")):
        blocks = rendered(ctx, job_id, fmt).removeprefix("WEBVTT\n\n").strip().split("\n\n")
        cued = [re.fullmatch(voice, " ".join(b.split("\n")[skip:])).groups() for b in blocks]
        assert " ".join(text for _, text in cued) == " ".join(text for _, text in turns)
        assert [k for k, _ in groupby(who for who, _ in cued)] == [
            k for k, _ in groupby(who.removeprefix("Speaker ") for who, _ in turns)
        ]
    for i, chunk in enumerate(chunks):  # each chunk's two sentences sit inside it, on the job's timeline
        a, b = body["segments"][2 * i : 2 * i + 2]
        assert chunk.start_seconds <= a["start"] < a["end"] <= b["start"] < b["end"] <= chunk.end_seconds
    assert all(w["speaker"] == s["speaker"] for s in body["segments"] for w in s["words"])
    assert job.transcript_text == " ".join([JFK] * n)


def two_voices() -> ab.Recording:
    """A woman reading (LJSpeech, "lj") and a man reading (LibriSpeech 1089, "ls") taking turns."""
    turns = [
        ("lj", "ljspeech/LJ001-0001.wav"),
        ("ls", "librispeech/1089-134686-0000.flac"),
        ("lj", "ljspeech/LJ001-0003.wav"),
        ("ls", "librispeech/1089-134691-0001.flac"),
        ("lj", "ljspeech/LJ001-0005.wav"),
    ]
    passages = [(who, ab.trim(ab.load(speech(path)))) for who, path in turns]
    return ab.join(passages, [ab.silence(0.8)] * (len(turns) - 1))


def provider_words(chunk, recording: ab.Recording, letters: dict[str, str]) -> list[dict[str, object]]:
    """What a provider hears in a chunk: a word every 0.5 s of each turn, named after its speaker
    ("lj" or "ls") and labelled with the provider's letter for that speaker in this chunk, in
    milliseconds from the start of the chunk's audio (its spans back to back)."""
    words, offset = [], 0.0
    for start, end in chunk.speech_spans:
        for turn in recording.passages:
            t = max(start, turn.start)
            while t + 0.4 <= min(end, turn.end):
                at = offset + t - start
                words.append(
                    {
                        "text": turn.name,
                        "start": round(at * 1000),
                        "end": round((at + 0.4) * 1000),
                        "confidence": 0.9,
                        "speaker": letters[turn.name],
                    }
                )
                t += 0.5
        offset += end - start
    return words


def test_provider_letters_that_change_between_chunks_are_linked_by_voice(
    worker_ctx, fake, user_id, run_worker, tmp_path
):
    ctx = use_assemblyai(worker_ctx, fake, fake.api_key, chunk_seconds=25)
    recording = two_voices()
    job_id = submit(ctx, user_id, mode=Mode.DIALOGUE, path=recording.write(tmp_path / "two.wav"))
    assert tasks.prepare(job_id) == "prepared"
    _, chunks = load_job(ctx, job_id)
    # The provider names speakers per request: here "A" is the woman in even chunks, the man in odd.
    for chunk in chunks:
        swapped = chunk.chunk_index % 2 == 1
        letters = {"lj": "B", "ls": "A"} if swapped else {"lj": "A", "ls": "B"}
        fake.heard[chunk.speech_seconds] = provider_words(chunk, recording, letters)
    said_in_odd_chunk = {(w["text"], w["speaker"]) for w in fake.heard[chunks[1].speech_seconds]}
    assert {("lj", "B"), ("ls", "A")} <= said_in_odd_chunk  # both speak in a swapped chunk
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    body = json.loads(rendered(ctx, job_id, "json"))
    letters_of = defaultdict(set)
    for w in (w for s in body["segments"] for w in s["words"]):
        letters_of[w["text"]].add(w["speaker"])
    assert letters_of == {"lj": {"A"}, "ls": {"B"}}  # one letter per person, across every chunk
    assert [u["speaker"] for u in body["utterances"]] == ["A", "B", "A", "B", "A"]  # the five turns
    assert all(c.voices for c in chunks)
