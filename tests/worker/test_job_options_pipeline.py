"""A job's options through the worker pipeline: word timings, a part of the file, the model and
what it is told (batching never mixes them), and a language detected once per job."""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.db import session_scope
from core.enums import Backend, JobStatus, Priority, Tier
from core.options import TranscriptionOptions
from core.queues import prepare_task_id
from core.tiers import POLICIES, month_start
from repositories.jobs import JobRepository
from repositories.models import Chunk
from storage.keys import chunk_key, transcript_key
from tests.audio_builders import silence, spoken, write_wav
from tests.conftest import create_user, load_job, speech, submit_file, word_error_rate
from worker import tasks
from worker.audio import read_audio
from worker.context import WorkerContext
from worker.merge import merge_chunks

REAL = pytest.mark.parametrize("stack", [pytest.param("real", marks=pytest.mark.integration)])

LONGFORM = "longform/ljspeech_LJ001-0001_to_0032_concat"
JFK = speech("jfk/jfk.flac")  # 11 s: three chunks of at most 4 s
OTHERS = [  # 3 to 5 s each
    speech("librispeech/61-70968-0000.flac"),
    speech("librispeech/1089-134686-0001.flac"),
    speech("librispeech/1089-134691-0001.flac"),
]


@pytest.fixture
def user_id(sessions) -> str:
    return create_user(sessions)[0]


def chunk_seconds(ctx: WorkerContext, seconds: float) -> WorkerContext:
    ctx.settings = ctx.settings.model_copy(update={"chunk_seconds": seconds})
    ctx.queues._settings = ctx.settings
    return ctx


def submit(
    ctx: WorkerContext, user_id: str, path: Path, *, language: str | None = None, **options: Any
) -> str:
    """A job as the API records it: its options stored beside it, the model resolved to a name."""
    job_id = submit_file(ctx, user_id, path)
    chosen = TranscriptionOptions(**{"model": ctx.settings.default_model_name} | options)
    with session_scope(ctx.sessions) as session:
        jobs = JobRepository(session)
        jobs.update(jobs.get(job_id), options=chosen.to_json() or None, language=language)
    return job_id


def transcript_json(ctx: WorkerContext, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(b"".join(ctx.storage.iter_bytes(transcript_key(job_id, "json"))))
    return body


# --- timestamps=word ------------------------------------------------------------------------------


@REAL
def test_word_timestamps_come_in_order_inside_their_segments_with_probabilities(
    worker_ctx, user_id, run_worker
):
    ctx = chunk_seconds(worker_ctx, 10.0)  # spontaneous speech, fillers and all, in three windows
    recording = speech("mfa_spontaneous/acoustic_corpus.wav")
    worded = submit(ctx, user_id, recording, timestamps="word")
    plain = submit(ctx, user_id, JFK)
    run_worker()
    job, chunks = load_job(ctx, worded)
    assert job.status == JobStatus.COMPLETED, job.error
    assert len(chunks) >= 2
    body = transcript_json(ctx, worded)
    words = [w for s in body["segments"] for w in s["words"]]
    assert len(words) >= 40
    for segment in body["segments"]:
        assert segment["words"], segment
        for word in segment["words"]:
            assert segment["start"] <= word["start"] <= word["end"] <= segment["end"], (segment, word)
            assert 0.0 <= word["probability"] <= 1.0 and word["text"].strip()
        assert "".join(w["text"] for w in segment["words"]).strip() == segment["text"]
    # In order across the whole transcript: each word starts where the one before ended, or later.
    assert all(a["end"] <= b["start"] for a, b in pairwise(words)), words
    reference = speech("mfa_spontaneous/acoustic_corpus.txt").read_text()
    assert word_error_rate(reference, body["text"]) < 0.35, body["text"]
    # A job that asked for segment timestamps has none (the service keeps no word timings itself).
    assert load_job(ctx, plain)[0].status == JobStatus.COMPLETED
    assert all(s["words"] == [] for s in transcript_json(ctx, plain)["segments"])


def test_word_timings_that_step_back_or_stick_out_are_put_in_order_inside_their_segment():
    words = [
        {"start": 10.2, "end": 10.6, "text": " one", "probability": 0.9},
        {"start": 10.4, "end": 10.5, "text": " two", "probability": 0.8},  # starts before one ends
        {"start": 10.9, "end": 12.4, "text": " three", "probability": 0.7},  # ends after its segment
    ]
    segment = {"start": 10.2, "end": 12.0, "text": "one two three", "words": words}
    chunk = Chunk(chunk_index=0, start_seconds=10.0, end_seconds=14.0, segments=[segment], language="en")
    [merged] = merge_chunks([chunk], 20.0).segments
    assert [(w["start"], w["end"]) for w in merged["words"]] == [(10.2, 10.6), (10.6, 10.6), (10.9, 12.0)]
    assert [w["probability"] for w in merged["words"]] == [0.9, 0.8, 0.7]


# --- start / end ------------------------------------------------------------------------------------


def clips() -> list[dict[str, Any]]:
    segments: list[dict[str, Any]] = json.loads(speech(f"{LONGFORM}.segments.json").read_text())["segments"]
    return segments


def normalized_words(text: str) -> set[str]:
    from whisper_normalizer.english import EnglishTextNormalizer

    return set(EnglishTextNormalizer()(text).split())


@REAL
def test_start_and_end_transcribe_exactly_that_part_on_the_files_timeline_and_bill_only_it(
    worker_ctx, user_id, run_worker, monkeypatch
):
    ctx = chunk_seconds(worker_ctx, 8.0)
    # A minute a month: the part fits; the file up to the part's end (83 s) would not.
    monkeypatch.setitem(POLICIES, Tier.PRO, dataclasses.replace(POLICIES[Tier.PRO], monthly_minutes=1))
    every = clips()
    # Clips 9 to 11 (61-83 s of 231 s), cut in the middle of the 0.3 s pauses around them.
    first, last = 9, 11
    start = round((every[first - 1]["end"] + every[first]["start"]) / 2, 3)
    end = round((every[last]["end"] + every[last + 1]["start"]) / 2, 3)
    job_id = submit(ctx, user_id, speech(f"{LONGFORM}.wav"), start=start, end=end)
    run_worker()

    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.audio_duration_seconds == pytest.approx(end - start, abs=1e-9)
    with session_scope(ctx.sessions) as session:
        billed = JobRepository(session).billed_seconds(user_id, month_start())
    assert billed == pytest.approx(end - start, abs=1e-9)
    assert len(chunks) >= 2 and all(start <= c.start_seconds < c.end_seconds <= end for c in chunks)

    body = transcript_json(ctx, job_id)
    segments = body["segments"]
    assert start <= segments[0]["start"] and segments[-1]["end"] <= end
    # On the file's timeline: speech starts where the first clip starts in the file, not at 0.
    assert abs(segments[0]["start"] - every[first]["start"]) < 0.5, segments[0]
    assert abs(segments[-1]["end"] - every[last]["end"]) < 0.7, segments[-1]
    wanted = " ".join(c["text"] for c in every[first : last + 1])
    assert word_error_rate(wanted, body["text"]) < 0.15, body["text"]
    # Nothing of the clips outside: no word found only in the clip before or the clip after.
    around = normalized_words(every[first - 1]["text"]) | normalized_words(every[last + 1]["text"])
    outside = around - normalized_words(wanted)
    assert normalized_words(body["text"]) & outside == set(), body["text"]


# --- batching by model and options ------------------------------------------------------------------


@dataclass
class Call:
    model: str | None
    chunks: list[tuple[str, int] | None]
    languages: list[str | None]
    told: dict[str, Any]


@dataclass
class Recorder:
    """Every model call of the worker, with the chunks it carried (known by their audio)."""

    by_audio: dict[str, tuple[str, int]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    detections: list[tuple[str | None, tuple[str, float]]] = field(default_factory=list)

    def know(self, ctx: WorkerContext, job_id: str) -> None:
        for chunk in load_job(ctx, job_id)[1]:
            with ctx.storage.local_path(chunk_key(job_id, chunk.chunk_index)) as path:
                self.by_audio[fingerprint(read_audio(path))] = (job_id, chunk.chunk_index)

    def jobs_of(self, call: Call) -> set[str]:
        return {pair[0] for pair in call.chunks if pair is not None}


def fingerprint(audio: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()


class Spy:
    """A transcriber that records what it is asked, and passes everything on to the real model."""

    def __init__(self, inner: Any, model: str | None, recorder: Recorder) -> None:
        self.inner, self.model, self.recorder = inner, model, recorder
        self.batch_size = inner.batch_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transcribe(self, audio: Path, language: str | None) -> Any:
        return self.inner.transcribe(audio, language)

    def transcribe_many(self, audios: Any, languages: Any, words: Any = None, **told: Any) -> Any:
        chunks = [self.recorder.by_audio.get(fingerprint(a)) for a in audios]
        self.recorder.calls.append(Call(self.model, chunks, list(languages), told))
        return self.inner.transcribe_many(audios, languages, words, **told)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        found: tuple[str, float] = self.inner.detect_language(audio)
        self.recorder.detections.append((self.model, found))
        return found


@pytest.fixture
def recorder(worker_ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder, spies, real = Recorder(), {}, worker_ctx.transcriber_for

    def spied(backend: Backend, model: str | None = None) -> Any:
        key = (backend, model)
        if key not in spies:
            spies[key] = Spy(real(backend, model), model, recorder)
        return spies[key]

    monkeypatch.setattr(worker_ctx, "transcriber_for", spied)
    return recorder


def prepared(ctx: WorkerContext, recorder: Recorder, job_id: str) -> str:
    """Cut here, with its chunks known to the recorder; only chunk tasks wait in the queue."""
    assert tasks.prepare(job_id) == "prepared"
    ctx.queues.queues[Priority.NORMAL].remove(prepare_task_id(job_id))
    recorder.know(ctx, job_id)
    return job_id


@REAL
def test_a_model_call_carries_chunks_of_one_model_and_one_set_of_options_only(
    worker_ctx, user_id, run_worker, recorder, monkeypatch
):
    ctx = chunk_seconds(worker_ctx, 4.0)
    bundled = ctx.settings.whisper_model
    ctx.settings = ctx.settings.model_copy(update={"models": f"tiny.en={bundled},twin={bundled}"})
    monkeypatch.setattr(ctx, "batch_size", lambda: 16)
    names = "Kennedy, Americans"
    # Four recordings: the recorder knows a chunk by its audio.
    jobs = {
        "a": prepared(ctx, recorder, submit(ctx, user_id, JFK, prompt=names)),
        "b": prepared(ctx, recorder, submit(ctx, user_id, OTHERS[0], prompt="Ask not.", hotwords="country")),
        "a twin": prepared(ctx, recorder, submit(ctx, user_id, OTHERS[1], prompt=names)),
        "a, other model": prepared(
            ctx, recorder, submit(ctx, user_id, OTHERS[2], model="twin", prompt=names)
        ),
    }
    run_worker()

    every_chunk = []
    for job_id in jobs.values():
        job, chunks = load_job(ctx, job_id)
        assert job.status == JobStatus.COMPLETED, job.error
        every_chunk += [(job_id, c.chunk_index) for c in chunks]
    assert len(every_chunk) >= 6
    options = {j: TranscriptionOptions.of(load_job(ctx, j)[0].options) for j in jobs.values()}
    carried = [pair for call in recorder.calls for pair in call.chunks]
    assert sorted(carried) == sorted(every_chunk)  # each chunk in exactly one model call
    for call in recorder.calls:
        for job_id in recorder.jobs_of(call):
            job_options = options[job_id]
            # What the model was told is each of its chunks' job's own: model, task, prompt, hotwords.
            assert call.model == job_options.model
            assert call.told == {
                "task": job_options.task,
                "prompt": job_options.prompt,
                "hotwords": job_options.hotwords,
            }
    shared = [recorder.jobs_of(call) for call in recorder.calls]
    assert {jobs["a"], jobs["a twin"]} in shared, shared  # the same options go in one call
    assert not any(jobs["b"] in s and len(s) > 1 for s in shared), shared
    assert not any(jobs["a, other model"] in s and len(s) > 1 for s in shared), shared


# --- language detection ------------------------------------------------------------------------------


GERMAN = (
    "Guten Morgen, meine Damen und Herren. Heute sprechen wir über das Wetter in Berlin und München. "
    "Am Wochenende wird es regnen, aber am Montag scheint wieder die Sonne."
)
ENGLISH = "Thank you very much, and see you next week."


@pytest.fixture
def german_then_english(tmp_path: Path) -> Path:
    """German speech, then, after a pause, one English sentence: a chunk of its own."""
    pcm = np.concatenate(
        [spoken(GERMAN, "de", tmp_path), silence(2.0), spoken(ENGLISH, "en", tmp_path), silence(0.5)]
    )
    write_wav(tmp_path / "mixed.wav", pcm)
    return tmp_path / "mixed.wav"


@REAL
def test_a_job_without_a_language_is_detected_once_from_its_first_speech_and_every_chunk_uses_it(
    worker_ctx, user_id, run_worker, recorder, multilingual_model, german_then_english
):
    ctx = chunk_seconds(worker_ctx, 12.0)  # the German, then the English: two chunks
    bundled = ctx.settings.whisper_model
    ctx.settings = ctx.settings.model_copy(
        update={"models": f"tiny.en={bundled},base={multilingual_model}", "default_model": "tiny.en"}
    )
    detected = submit(ctx, user_id, german_then_english, model="base")
    run_worker()

    job, chunks = load_job(ctx, detected)
    assert job.status == JobStatus.COMPLETED, job.error
    assert len(chunks) >= 2
    assert job.detected_language == "de" and 0.5 < job.language_probability <= 1.0
    # Once per job, by the job's model, on its first speech.
    assert recorder.detections == [("base", ("de", job.language_probability))]
    # Every chunk, the English one too, was transcribed in the job's language: none detected its own.
    assert [c.language for c in chunks] == ["de"] * len(chunks)
    assert {language for call in recorder.calls for language in call.languages} == {"de"}
    body = transcript_json(ctx, detected)
    assert (body["language"], body["language_probability"]) == ("de", job.language_probability)
    assert "Berlin" in body["text"]


@REAL
def test_an_english_only_model_detects_english_and_a_job_that_names_its_language_detects_nothing(
    worker_ctx, user_id, run_worker, recorder
):
    detected = submit(worker_ctx, user_id, JFK)
    named = submit(worker_ctx, user_id, OTHERS[0], language="en")
    run_worker()
    job, chunks = load_job(worker_ctx, detected)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.detected_language, job.language_probability) == ("en", 1.0)
    assert [c.language for c in chunks] == ["en"] * len(chunks)
    assert transcript_json(worker_ctx, detected)["language_probability"] == 1.0
    assert recorder.detections == [("tiny.en", ("en", 1.0))]  # the first job's only
    named_job, _ = load_job(worker_ctx, named)
    assert named_job.status == JobStatus.COMPLETED, named_job.error
    assert (named_job.language, named_job.language_probability) == ("en", None)
    assert transcript_json(worker_ctx, named)["language"] == "en"
    assert transcript_json(worker_ctx, named)["language_probability"] is None
