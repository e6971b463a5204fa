"""The pipeline stages RQ runs, by name: prepare → transcribe_chunk (one per chunk) → merge.

`prepare` streams: each window of speech becomes a chunk (row, audio, task) as soon as it is cut,
so the first chunks of a long file are transcribed while the rest is still decoding.

Each stage takes ids only, is safe to run twice, and keeps database transactions short: slow work
(decoding, transcription) happens between two small units of work, never inside one. Unexpected
errors are raised so that RQ retries the stage; on the last attempt the failure is recorded in SQL,
which is what users see.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from rq import get_current_job
from sqlalchemy.orm import Session

from core.db import session_scope
from core.enums import Backend, ChunkStatus, Priority, Tier, TranscriptFormat
from core.logging import get_logger
from core.options import TranscriptionOptions
from core.queues import WorkState, chunk_task_id
from core.tiers import month_start, policy_for
from repositories.chunks import CLOSED, UNFINISHED, ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Chunk
from repositories.users import UserRepository
from storage.keys import chunk_key, chunks_prefix, transcript_key
from worker.audio import SAMPLE_RATE, AudioDecodeError, Pcm, decode_pcm, encode_flac, model_input
from worker.backends.base import PermanentTranscriptionError
from worker.context import WorkerContext, current
from worker.ingest import PermanentDownloadError, TransientDownloadError, fetch_source
from worker.merge import merge_chunks
from worker.planning import Window, plan_windows
from worker.speakers import speaker_count
from worker.transcription import (
    ChunkFailed,
    ChunkWork,
    claim,
    is_open,
    record_error,
    transcribe_batch,
    transcribe_one,
)
from worker.writers import render

log = get_logger(__name__)


def prepare(job_id: str) -> str:
    ctx = current()
    with session_scope(ctx.sessions) as session:
        job = JobRepository(session).get(job_id)
        if job is None or job.status.is_final:
            return "skipped"
        source, priority, planned = job.source_key, job.priority, job.chunks_total is not None
        backend, options = ctx.backend_for(job.backend), TranscriptionOptions.of(job.options)
        url, window = job.source_url, ctx.settings.chunk_seconds_for(backend)
        # A local job that names no language: found once, from its first speech (`_first_language`).
        # A hosted backend (AssemblyAI) detects it per chunk, as it always did.
        detects = backend == Backend.LOCAL and job.language is None and job.detected_language is None
        tier = _owner_tier(session, job.user_id)
        known = {c.chunk_index: c.status for c in ChunkRepository(session).list_for_job(job_id)}
        # A URL, or a container that stated no duration: its minutes were not counted when it was
        # accepted, so they are checked once decoding has told them.
        unmetered = job.user_id if job.audio_duration_seconds is None else None
    if planned:
        # A retried job whose plan is recorded: its open chunks go back to the queue.
        ctx.queues.enqueue_chunks(
            job_id, priority, [i for i, status in known.items() if status not in CLOSED]
        )
        return "prepared"
    try:
        if url is not None:
            fetch_source(ctx, job_id, url, source, tier)
        planning = Planning(
            job_id,
            source,
            tier,
            window,
            priority,
            known,
            unmetered,
            options=options,
            detects_language=detects,
        )
        chunks = _plan_chunks(ctx, planning)
    except (AudioDecodeError, TooLong, OverQuota, PermanentDownloadError, PermanentTranscriptionError) as exc:
        fail_job(ctx, job_id, str(exc))
        return "failed"
    except TransientDownloadError as exc:
        _fail_job_on_last_attempt(ctx, job_id, str(exc))
        raise
    except Exception as exc:
        _fail_job_on_last_attempt(ctx, job_id, f"could not prepare the audio: {exc}")
        raise
    log.info("job.prepared", job_id=job_id, chunks=chunks, priority=priority.value)
    return "prepared"


class TooLong(Exception):
    """Longer than the owner's tier allows: the job fails and its minutes are not billed."""


class OverQuota(Exception):
    """Longer than the minutes left of the owner's month: the job fails and is not billed."""


def _owner_tier(session: Session, user_id: str) -> Tier:
    user = UserRepository(session).get(user_id)
    return user.tier if user is not None else Tier.FREE


@dataclass(frozen=True)
class Planning:
    job_id: str
    source: str
    tier: Tier
    window_seconds: float
    priority: Priority
    # Chunks an earlier, interrupted `prepare` already recorded, and their status.
    known: dict[int, ChunkStatus]
    # The owner, when the job's minutes are still to be checked against the month's.
    unmetered_owner: str | None = None
    # Its part of the file (`start`/`end`) and the model that finds its language.
    options: TranscriptionOptions = field(default_factory=TranscriptionOptions)
    # Whether the job's language is to be found from its first speech before any chunk is queued.
    detects_language: bool = False


def _plan_chunks(ctx: WorkerContext, plan: Planning) -> int:
    """Cut the source into windows of speech, and hand each out as soon as it is cut: its audio to
    storage, its row to SQL, its task to the queue. Then record the plan as complete (the number of
    chunks and the file's duration) and queue the merge. Returns the number of chunks.

    Deterministic, so a `prepare` that runs again (a crash, a lost task) cuts the same windows: it
    skips the chunks already recorded and re-queues only those whose task Redis no longer holds.
    """
    audio = _Decoded(policy_for(plan.tier).max_duration_minutes, plan.tier, plan.options)
    chain = ctx.queues.lane_chain(plan.job_id, plan.priority)
    count = 0
    with ctx.storage.local_path(plan.source) as path:
        for planned in plan_windows(audio.blocks(path), plan.window_seconds):
            window = audio.on_file_timeline(planned)
            count += 1
            status = plan.known.get(window.index)
            if status is None:
                language = _first_language(ctx, plan, window)
                _record_chunk(ctx, plan.job_id, window, language)
                chain.add(window.index)
            elif status not in CLOSED:
                lost = ctx.queues.state(chunk_task_id(plan.job_id, window.index)) in LOST
                chain.add(window.index, enqueue=lost)
    # What the job bills: the part of the file it transcribes, by the rule the API checked with.
    duration = plan.options.span_seconds(audio.file_seconds)
    with session_scope(ctx.sessions) as session:
        if plan.unmetered_owner is not None:
            _check_minutes_left(session, plan.unmetered_owner, plan.tier, duration)
        JobRepository(session).claim_plan(plan.job_id, duration=duration, chunks_total=count)
    chain.finish()
    return count


def _check_minutes_left(session: Session, user_id: str, tier: Tier, seconds: float) -> None:
    """The check a submission with a known duration had, now: under the owner's lock, so jobs that
    finish decoding at the same time cannot together pass the month's minutes. The job's own
    duration is still unrecorded here, so it is not in what the month has billed."""
    UserRepository(session).lock(user_id)
    left = policy_for(tier).seconds_left(JobRepository(session).billed_seconds(user_id, month_start()))
    if seconds > left:
        raise OverQuota(
            f"the audio is {seconds / 60:.1f} min long but only {left / 60:.1f} of this month's "
            "audio minutes were left"
        )


LOST = (WorkState.MISSING, WorkState.ENDED)


@runtime_checkable
class LanguageDetector(Protocol):
    def detect_language(self, audio: npt.NDArray[np.float32]) -> tuple[str, float]:
        """The language spoken in `audio` (16 kHz mono float32) and how sure the model is of it."""


def _first_language(ctx: WorkerContext, plan: Planning, window: Window) -> tuple[str, float] | None:
    """The language of a job that names none, found once from its first window of speech, before
    that window's chunk is queued: every chunk is then transcribed in it, so a file never comes
    back in a mix of languages because some chunk sounded like another (an accent, a name, a
    short chunk). A model that cannot detect leaves each chunk to find its own."""
    if window.index != 0 or not plan.detects_language:
        return None
    transcriber = ctx.transcriber_for(Backend.LOCAL, plan.options.model)
    if not isinstance(transcriber, LanguageDetector):
        return None
    language, probability = transcriber.detect_language(model_input(window.pcm))
    log.info("job.language_detected", job_id=plan.job_id, language=language, probability=probability)
    return language, probability


def _record_chunk(
    ctx: WorkerContext, job_id: str, window: Window, language: tuple[str, float] | None
) -> None:
    key = chunk_key(job_id, window.index)
    ctx.storage.put_bytes(key, encode_flac(window.pcm))
    with session_scope(ctx.sessions) as session:
        if language is not None:
            # With the first chunk's row, so no chunk of the job is ever claimed without it.
            JobRepository(session).record_detected_language(job_id, *language)
        ChunkRepository(session).add_once(
            job_id,
            window.index,
            start_seconds=window.start,
            end_seconds=window.end,
            spans=window.span_seconds,
            audio_key=key,
        )
        JobRepository(session).start_processing(job_id)


class _Decoded:
    """The decoded blocks of the job's part of the source (`start` to `end`; the whole file by
    default), counted, stopping at the tier's limit on audio per file."""

    def __init__(self, max_minutes: int, tier: Tier, options: TranscriptionOptions) -> None:
        self._limit = max_minutes * 60 * SAMPLE_RATE
        self._max_minutes, self._tier = max_minutes, tier
        self._end = options.end
        self.first = round((options.start or 0.0) * SAMPLE_RATE)
        self._last = None if options.end is None else round(options.end * SAMPLE_RATE)
        self.position = 0  # samples of the file decoded, on its timeline
        self.reached_end = False  # decoding stopped at `end`, before the file did
        self.samples = 0  # of them, those in the part

    @property
    def file_seconds(self) -> float:
        """How long the file is, as far as it was decoded: to `end`, when it reached that far."""
        if self.reached_end and self._end is not None:
            return self._end
        return self.position / SAMPLE_RATE

    def on_file_timeline(self, window: Window) -> Window:
        """A window planned from the part's first sample, with its spans where they lie in the
        file: every time in the transcript is then a time in the file."""
        spans = tuple((a + self.first, b + self.first) for a, b in window.spans)
        return Window(window.index, spans, window.pcm)

    def blocks(self, path: Path) -> Iterator[Pcm]:
        for block in decode_pcm(path):
            at, self.position = self.position, self.position + len(block)
            part = block[max(self.first - at, 0) : None if self._last is None else max(self._last - at, 0)]
            if len(part):
                self._count(len(part))
                yield part
            if self._last is not None and self.position >= self._last:
                # The rest of the file is not the job's: it is not decoded at all.
                self.reached_end = True
                return

    def _count(self, samples: int) -> None:
        self.samples += samples
        if self.samples > self._limit:
            # Stop decoding at the limit: a ten-hour file must not cost ten hours of decode.
            raise TooLong(
                f"the audio is longer than the {self._max_minutes} min per file "
                f"the {self._tier.value} tier allows"
            )


def transcribe_chunk(job_id: str, index: int) -> str:
    """One chunk's task. Usually the worker has already transcribed it, in a batch with the chunks
    queued beside it (`worker.batching`), and this finds it done; a batch that failed for it left
    the error here, and it counts as this task's attempt. Else the chunk is transcribed now."""
    ctx = current()
    pair = (job_id, index)
    outcome = ctx.batch_outcomes.pop(pair, None)
    if outcome is None:
        works = claim(ctx, [pair])
        if not works:
            return "skipped"
        outcome = transcribe_batch(ctx, works)[pair]
    if isinstance(outcome, ChunkWork):
        try:
            return transcribe_one(ctx, outcome)
        except ChunkFailed:
            return "failed"
        except Exception as exc:
            record_error(ctx, pair, exc, final=_is_last_attempt())
            raise
    if isinstance(outcome, Exception):
        # A permanent error fails the chunk now: the merge fails the job with why.
        permanent = isinstance(outcome, PermanentTranscriptionError)
        record_error(ctx, pair, outcome, final=permanent or _is_last_attempt())
        if permanent:
            return "failed"
        raise outcome
    return str(outcome)


def merge(job_id: str) -> str:
    ctx = current()
    try:
        return _merge(ctx, job_id)
    except Exception as exc:
        _fail_job_on_last_attempt(ctx, job_id, f"could not assemble the transcript: {exc}")
        raise


def _merge(ctx: WorkerContext, job_id: str) -> str:
    with session_scope(ctx.sessions) as session:
        jobs = JobRepository(session)
        job = jobs.get(job_id)
        if job is None or job.status.is_final:
            return "skipped"
        chunks = ChunkRepository(session).list_for_job(job_id)
        if job.chunks_total is None or len(chunks) < job.chunks_total:
            # `prepare` is still cutting the audio; it queues the merge when it is done.
            log.info("merge.waiting", job_id=job_id, planned=len(chunks))
            return "waiting"
        if any(c.status in UNFINISHED for c in chunks):
            # An early merge (re-enqueued during a recovery) leaves the job to the last chunk's
            # merge, or to the reconciler; only chunks that failed for good fail the job.
            log.info("merge.waiting", job_id=job_id)
            return "waiting"
        unfinished = [c for c in chunks if is_open(c)]
        if unfinished:
            jobs.fail(job, _unfinished_message(unfinished))
            log.warning("job.failed", job_id=job_id, error=job.error)
            return "failed"
        transcript = merge_chunks(
            chunks,
            job.audio_duration_seconds or 0.0,
            language=job.language or job.detected_language,
            language_probability=job.language_probability,
            speakers=speaker_count(job),
        )
        for fmt in TranscriptFormat:
            ctx.storage.put_bytes(transcript_key(job_id, fmt.value), render(transcript, fmt).encode())
        if not jobs.complete(job, text=transcript.text, detected_language=transcript.language):
            # A concurrent merge finished the job first; its transcript files are the same.
            log.info("merge.duplicate_discarded", job_id=job_id)
            return "duplicate"
    # Each chunk's audio went when its result was stored; this sweeps what duplicates left behind.
    ctx.storage.delete_prefix(chunks_prefix(job_id))
    log.info("job.completed", job_id=job_id, chunks=len(chunks), duration=transcript.duration)
    return "completed"


def _unfinished_message(unfinished: list[Chunk]) -> str:
    first = unfinished[0]
    reason = first.error or f"it ended {first.status.value}"
    return f"{len(unfinished)} chunk(s) could not be transcribed; chunk {first.chunk_index}: {reason}"


def fail_job(ctx: WorkerContext, job_id: str, error: str) -> None:
    with session_scope(ctx.sessions) as session:
        jobs = JobRepository(session)
        job = jobs.get(job_id)
        if job is not None and not job.status.is_final:
            jobs.fail(job, error)
    log.warning("job.failed", job_id=job_id, error=error)


def _fail_job_on_last_attempt(ctx: WorkerContext, job_id: str, error: str) -> None:
    if _is_last_attempt():
        fail_job(ctx, job_id, error)


def _is_last_attempt() -> bool:
    job = get_current_job()
    return job is None or not job.retries_left
