"""The pipeline stages, run by a real RQ worker in this process."""

import json
import threading
import wave
from collections.abc import Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

import worker.tasks
from core.enums import ChunkStatus, JobStatus, Priority
from core.queues import WorkState, chunk_task_id, merge_task_id, prepare_task_id
from storage.keys import chunk_key, chunks_prefix, transcript_key
from tests.conftest import create_user, load_job, shared_whisper, speech, submit_file, word_error_rate
from worker import tasks
from worker.audio import SAMPLE_RATE, decode_pcm, encode_flac
from worker.backends.base import ChunkTranscript


@pytest.fixture
def user_id(sessions):
    return create_user(sessions)[0]


@pytest.fixture
def short_chunks(worker_ctx):
    """jfk.flac (11 s) in several chunks, to exercise cuts and merging cheaply."""
    worker_ctx.settings = worker_ctx.settings.model_copy(update={"chunk_seconds": 4.0})
    return worker_ctx


def test_a_multi_chunk_job_completes_with_progress_and_ordered_segments(short_chunks, user_id, run_worker):
    job_id = submit_file(short_chunks, user_id, speech("jfk/jfk.flac"))
    run_worker()
    job, chunks = load_job(short_chunks, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.chunks_total == len(chunks) >= 2
    assert job.chunks_completed == job.chunks_total
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    # Chunks hold speech in order and never overlap; the silence between them belongs to none.
    assert all(a.end_seconds <= b.start_seconds for a, b in pairwise(chunks))
    for chunk in chunks:
        spans = chunk.speech_spans
        assert (spans[0][0], spans[-1][1]) == (chunk.start_seconds, chunk.end_seconds)
        assert all(a < b <= c for (a, b), (c, _) in pairwise(spans))
        assert 0 < chunk.speech_seconds <= 4.0  # the model hears at most chunk_seconds
    assert 0 <= chunks[0].start_seconds < 0.5 and 10.5 < chunks[-1].end_seconds <= job.audio_duration_seconds
    assert job.audio_duration_seconds == pytest.approx(11.0, abs=0.01)
    assert job.transcript_text == " ".join(c.text for c in chunks if c.text)
    reference = speech("jfk/jfk.txt").read_text()
    assert word_error_rate(reference, job.transcript_text) < 0.15, job.transcript_text
    starts = [s["start"] for c in chunks for s in c.segments]
    assert starts == sorted(starts)
    for chunk in chunks:  # every segment lies inside its chunk, on the job's timeline
        assert all(chunk.start_seconds <= s["start"] <= s["end"] <= chunk.end_seconds for s in chunk.segments)


def test_a_completed_chunk_is_never_transcribed_again(short_chunks, user_id, run_worker):
    job_id = submit_file(short_chunks, user_id, speech("jfk/jfk.flac"))
    run_worker()
    before, chunks = load_job(short_chunks, job_id)
    calls = []
    short_chunks.transcriber_factory = lambda: calls.append(1)  # would fail loudly if used
    short_chunks._transcriber = None
    assert tasks.transcribe_chunk(job_id, 0) == "skipped"
    assert tasks.prepare(job_id) == "skipped"
    assert tasks.merge(job_id) == "skipped"
    after, chunks_after = load_job(short_chunks, job_id)
    assert calls == []
    assert after.chunks_completed == before.chunks_completed
    assert [c.text for c in chunks_after] == [c.text for c in chunks]


class ReentrantTranscriber:
    """While chunk 0 is being transcribed, a duplicate delivery of the same chunk runs to the end."""

    def __init__(self, inner, job_id):
        self.inner, self.job_id, self.nested = inner, job_id, False

    def transcribe(self, audio, language):
        result = self.inner.transcribe(audio, language)
        if not self.nested:
            self.nested = True
            assert tasks.transcribe_chunk(self.job_id, 0) == "transcribed"
            return ChunkTranscript(
                [replace(s, text="LATE DUPLICATE") for s in result.segments], result.language
            )
        return result


def test_a_duplicate_run_of_a_chunk_is_fenced(short_chunks, user_id, run_worker, redis):
    job_id = submit_file(short_chunks, user_id, speech("jfk/jfk.flac"))
    assert tasks.prepare(job_id) == "prepared"
    short_chunks._transcriber = ReentrantTranscriber(shared_whisper(short_chunks.settings), job_id)
    assert tasks.transcribe_chunk(job_id, 0) == "duplicate"
    job, chunks = load_job(short_chunks, job_id)
    assert job.chunks_completed == 1
    assert chunks[0].status == ChunkStatus.COMPLETED and "LATE DUPLICATE" not in (chunks[0].text or "")
    short_chunks._transcriber = shared_whisper(short_chunks.settings)
    run_worker()
    job, chunks = load_job(short_chunks, job_id)
    assert job.status == JobStatus.COMPLETED and job.chunks_completed == job.chunks_total == len(chunks)
    assert "LATE DUPLICATE" not in job.transcript_text


def test_prepare_twice_keeps_one_plan(short_chunks, user_id):
    job_id = submit_file(short_chunks, user_id, speech("jfk/jfk.flac"))
    assert tasks.prepare(job_id) == "prepared"
    _, first = load_job(short_chunks, job_id)
    assert tasks.prepare(job_id) == "prepared"  # redelivered: re-enqueues, does not re-plan
    job, second = load_job(short_chunks, job_id)
    assert [c.id for c in second] == [c.id for c in first]
    assert job.chunks_total == len(first)


def test_the_model_is_loaded_once_per_worker_process(short_chunks, user_id, run_worker):
    builds = []

    def factory():
        builds.append(threading.get_ident())
        return shared_whisper(short_chunks.settings)

    short_chunks.transcriber_factory, short_chunks._transcriber = factory, None
    first = submit_file(short_chunks, user_id, speech("jfk/jfk.flac"))
    second = submit_file(short_chunks, user_id, speech("librispeech/2412-153948-0000.flac"))
    run_worker()
    assert [load_job(short_chunks, j)[0].status for j in (first, second)] == [JobStatus.COMPLETED] * 2
    assert sum(len(load_job(short_chunks, j)[1]) for j in (first, second)) >= 4
    assert len(builds) == 1


def corrupt_flac(tmp_path):
    """Starts as real FLAC (so the API accepts it) and turns into noise half-way through."""
    real = speech("jfk/jfk.flac").read_bytes()
    half = len(real) // 2
    path = tmp_path / "corrupt.flac"
    path.write_bytes(real[:half] + bytes((i * 7919) % 251 for i in range(len(real) - half)))
    return path


def test_corrupt_audio_fails_the_job_and_the_worker_carries_on(worker_ctx, user_id, run_worker, tmp_path):
    bad = submit_file(worker_ctx, user_id, corrupt_flac(tmp_path))
    good = submit_file(worker_ctx, user_id, speech("jfk/jfk.flac"))
    run_worker()
    bad_job, bad_chunks = load_job(worker_ctx, bad)
    assert bad_job.status == JobStatus.FAILED
    assert bad_job.error.startswith("audio could not be decoded") or "decod" in bad_job.error, bad_job.error
    assert bad_chunks == []
    assert load_job(worker_ctx, good)[0].status == JobStatus.COMPLETED


class FailingOn:
    def __init__(self, inner, failures):
        self.inner, self.failures = inner, failures

    def transcribe(self, audio, language):
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("backend went away")
        return self.inner.transcribe(audio, language)


def test_a_chunk_that_keeps_failing_fails_the_job_with_its_reason(worker_ctx, user_id, run_worker):
    worker_ctx._transcriber = FailingOn(shared_whisper(worker_ctx.settings), failures=99)
    job_id = submit_file(worker_ctx, user_id, speech("jfk/jfk.flac"))
    run_worker()
    job, chunks = load_job(worker_ctx, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == "1 chunk(s) could not be transcribed; chunk 0: ConnectionError: backend went away"
    assert chunks[0].status == ChunkStatus.FAILED


def test_a_transient_chunk_error_is_retried(worker_ctx, user_id, run_worker):
    worker_ctx.settings = worker_ctx.settings.model_copy(
        update={"task_retries": 2, "retry_backoff_seconds": [0]}
    )
    worker_ctx.queues._settings = worker_ctx.settings
    worker_ctx._transcriber = FailingOn(shared_whisper(worker_ctx.settings), failures=2)
    job_id = submit_file(worker_ctx, user_id, speech("jfk/jfk.flac"))
    run_worker()
    job, chunks = load_job(worker_ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert chunks[0].attempts == 3
    assert "country" in job.transcript_text


def test_a_high_job_queued_after_low_ones_runs_first(worker_ctx, sessions, run_worker):
    free, _ = create_user(sessions)
    lows = [submit_file(worker_ctx, free, speech("jfk/jfk.flac"), Priority.LOW) for _ in range(3)]
    high = submit_file(worker_ctx, free, speech("jfk/jfk.flac"), Priority.HIGH)
    run_worker()
    jobs = {j: load_job(worker_ctx, j)[0] for j in [*lows, high]}
    assert all(j.status == JobStatus.COMPLETED for j in jobs.values())
    assert jobs[high].completed_at < min(jobs[j].started_at for j in lows)


def test_a_merge_that_keeps_failing_fails_the_job(worker_ctx, user_id, run_worker, monkeypatch):
    def broken_put(key, data):
        if "transcript" in key:
            raise OSError("disk full")
        return original(key, data)

    original = worker_ctx.storage.put_bytes
    monkeypatch.setattr(worker_ctx.storage, "put_bytes", broken_put)
    job_id = submit_file(worker_ctx, user_id, speech("jfk/jfk.flac"))
    run_worker()
    job, chunks = load_job(worker_ctx, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == "could not assemble the transcript: disk full"
    assert chunks[0].status == ChunkStatus.COMPLETED  # the transcribed chunk is kept for a retry


# --- streaming preparation -------------------------------------------------------------------


def write_wav(path: Path, pcm: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.astype("<i2").tobytes())
    return path


def test_a_file_without_speech_completes_with_an_empty_transcript(worker_ctx, user_id, run_worker, tmp_path):
    hum = np.random.default_rng(3).normal(0, 30, 7 * SAMPLE_RATE).astype(np.int16)  # a quiet room
    job_id = submit_file(worker_ctx, user_id, write_wav(tmp_path / "room.wav", hum))
    run_worker()
    job, chunks = load_job(worker_ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.chunks_total, job.chunks_completed, chunks) == (0, 0, [])
    assert job.transcript_text == "" and job.audio_duration_seconds == 7.0
    transcript = b"".join(worker_ctx.storage.iter_bytes(transcript_key(job_id, "json")))
    assert json.loads(transcript) | {"language": None} == {
        "text": "",
        "language": None,
        "language_probability": None,  # no speech: nothing to detect a language from
        "duration": 7.0,
        "segments": [],
    }


def test_each_chunk_is_queued_as_soon_as_it_is_cut_and_the_merge_waits_for_the_whole_plan(
    short_chunks, user_id, monkeypatch
):
    job_id = submit_file(short_chunks, user_id, speech("jfk/jfk.flac"))
    seen, decoded = [], []
    queue_chunk = short_chunks.queues.enqueue_chunk

    def spy(job: str, priority: Priority, index: int, after: str | None) -> None:
        queue_chunk(job, priority, index, after)
        row, chunks = load_job(short_chunks, job)
        stored = short_chunks.storage.exists(chunk_key(job, index))
        if index == 0:  # a worker takes the first chunk at once: every chunk cut so far is done
            assert tasks.transcribe_chunk(job, 0) == "transcribed"
        seen.append((index, row.status, row.chunks_total, len(chunks), stored, tasks.merge(job)))
        decoded.append(sum(decoded_blocks))

    decoded_blocks: list[int] = []

    def counting_decode(path: Path) -> Iterator[np.ndarray]:
        for block in decode_pcm(path):
            decoded_blocks.append(len(block))
            yield block

    monkeypatch.setattr(short_chunks.queues, "enqueue_chunk", spy)
    monkeypatch.setattr(worker.tasks, "decode_pcm", counting_decode)
    assert tasks.prepare(job_id) == "prepared"
    job, chunks = load_job(short_chunks, job_id)
    assert len(chunks) == job.chunks_total >= 3
    # The first chunk was queued while most of the file was still to decode.
    assert decoded[0] < 0.75 * sum(decoded_blocks)
    # While decoding went on: each chunk's row and audio were there, the job already processing, its
    # plan not yet complete, so an early merge waited instead of finishing the job with part of it.
    assert seen == [(i, JobStatus.PROCESSING, None, i + 1, True, "waiting") for i in range(job.chunks_total)]
    assert (job.status, job.chunks_completed) == (JobStatus.PROCESSING, 1)


def test_a_chunks_audio_goes_once_its_text_is_stored_and_the_merge_leaves_no_chunk_behind(
    short_chunks, user_id, run_worker
):
    job_id = submit_file(short_chunks, user_id, speech("jfk/jfk.flac"))
    assert tasks.prepare(job_id) == "prepared"
    total = load_job(short_chunks, job_id)[0].chunks_total
    keys = [chunk_key(job_id, i) for i in range(total)]
    assert all(short_chunks.storage.exists(k) for k in keys) and keys[0].endswith(".flac")
    assert tasks.transcribe_chunk(job_id, 0) == "transcribed"
    assert [short_chunks.storage.exists(k) for k in keys] == [False] + [True] * (total - 1)
    run_worker()
    assert load_job(short_chunks, job_id)[0].status == JobStatus.COMPLETED
    assert not (short_chunks.settings.storage_dir / chunks_prefix(job_id)).exists()


def test_a_prepare_that_died_half_way_resumes_without_cutting_or_queueing_anything_twice(
    short_chunks, user_id, redis, monkeypatch
):
    job_id = submit_file(short_chunks, user_id, speech("jfk/jfk.flac"))
    queue = short_chunks.queues.queues[Priority.NORMAL]
    queue.remove(prepare_task_id(job_id))  # run here, not by a worker
    encoded: list[int] = []

    def crash_on_the_third(pcm: np.ndarray) -> bytes:
        if len(encoded) == 2:
            raise OSError("worker killed")
        encoded.append(1)
        return encode_flac(pcm)

    monkeypatch.setattr(worker.tasks, "encode_flac", crash_on_the_third)
    monkeypatch.setattr(worker.tasks, "_is_last_attempt", lambda: False)  # RQ will run it again
    with pytest.raises(OSError, match="worker killed"):
        tasks.prepare(job_id)
    job, first = load_job(short_chunks, job_id)
    assert (job.status, job.chunks_total, len(first)) == (JobStatus.PROCESSING, None, 2)
    queue.remove(chunk_task_id(job_id, 0))  # a worker took the first chunk meanwhile
    assert tasks.transcribe_chunk(job_id, 0) == "transcribed"
    monkeypatch.setattr(worker.tasks, "encode_flac", encode_flac)

    assert tasks.prepare(job_id) == "prepared"

    job, chunks = load_job(short_chunks, job_id)
    assert [c.id for c in chunks[:2]] == [c.id for c in first]  # the same rows, not cut again
    assert job.chunks_total == len(chunks) >= 3
    assert job.chunks_completed == 1  # recording the plan kept the progress made meanwhile
    queued = queue.get_job_ids()
    # Chunk 1's task was still queued and chunk 0 is done: neither is queued again.
    assert queued.count(chunk_task_id(job_id, 1)) == 1 and chunk_task_id(job_id, 0) not in queued
    assert len(queued) == len(set(queued))
    assert short_chunks.queues.state(merge_task_id(job_id)) == WorkState.WAITING
