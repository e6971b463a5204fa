"""The pipeline stages RQ runs, by name: prepare → transcribe_chunk (one per chunk) → merge.

Each stage takes ids only, is safe to run twice, and keeps database transactions short: slow work
(decoding, transcription) happens between two small units of work, never inside one. Unexpected
errors are raised so that RQ retries the stage; on the last attempt the failure is recorded in SQL,
which is what users see.
"""

import time
from dataclasses import dataclass
from typing import Any

from rq import get_current_job
from sqlalchemy.orm import Session

from core.db import session_scope
from core.enums import Backend, ChunkStatus, Mode, Tier, TranscriptFormat
from core.logging import get_logger
from core.tiers import policy_for
from repositories.chunks import CLOSED, UNFINISHED, ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Chunk
from repositories.users import UserRepository
from storage.keys import chunk_key, chunks_prefix, transcript_key
from worker.audio import AudioDecodeError, iter_chunks
from worker.backends.base import (
    ChunkTranscript,
    HostedTranscriber,
    PermanentTranscriptionError,
    ProviderTranscriptGone,
)
from worker.context import WorkerContext, current
from worker.ingest import PermanentDownloadError, TransientDownloadError, fetch_source
from worker.merge import merge_chunks, shift_segments
from worker.writers import render

log = get_logger(__name__)


def prepare(job_id: str) -> str:
    ctx = current()
    with session_scope(ctx.sessions) as session:
        job = JobRepository(session).get(job_id)
        if job is None or job.status.is_final:
            return "skipped"
        source, priority, planned = job.source_key, job.priority, job.chunks_total is not None
        url, chunk_seconds = job.source_url, ctx.settings.chunk_seconds_for(ctx.backend_for(job.backend))
        tier = _owner_tier(session, job.user_id)
        pending = [c.chunk_index for c in ChunkRepository(session).list_for_job(job_id) if _open(c)]
    if not planned:
        try:
            if url is not None:
                fetch_source(ctx, job_id, url, source, tier)
            pending = _plan_chunks(ctx, job_id, source, tier, chunk_seconds)
        except (AudioDecodeError, TooLong, PermanentDownloadError) as exc:
            fail_job(ctx, job_id, str(exc))
            return "failed"
        except TransientDownloadError as exc:
            _fail_job_on_last_attempt(ctx, job_id, str(exc))
            raise
        except Exception as exc:
            _fail_job_on_last_attempt(ctx, job_id, f"could not prepare the audio: {exc}")
            raise
    ctx.queues.enqueue_chunks(job_id, priority, pending)
    log.info("job.prepared", job_id=job_id, chunks=len(pending), priority=priority.value)
    return "prepared"


def _open(chunk: Chunk) -> bool:
    return chunk.status not in CLOSED


class TooLong(Exception):
    """Longer than the owner's tier allows: the job fails and its minutes are not billed."""


def _owner_tier(session: Session, user_id: str) -> Tier:
    user = UserRepository(session).get(user_id)
    return user.tier if user is not None else Tier.FREE


def _plan_chunks(ctx: WorkerContext, job_id: str, source: str, tier: Tier, chunk_seconds: float) -> list[int]:
    """Cut the source into chunk WAVs in storage, then record the plan. Returns the chunk indexes."""
    plan: list[dict[str, Any]] = []
    max_minutes = policy_for(tier).max_duration_minutes
    with ctx.storage.local_path(source) as path:
        for chunk in iter_chunks(path, chunk_seconds):
            if chunk.end > max_minutes * 60:
                # Stop decoding at the limit: a ten-hour file must not cost ten hours of decode.
                ctx.storage.delete_prefix(chunks_prefix(job_id))
                raise TooLong(
                    f"the audio is longer than the {max_minutes} min per file the {tier.value} tier allows"
                )
            key = chunk_key(job_id, chunk.index)
            ctx.storage.put_bytes(key, chunk.wav)
            plan.append(
                {
                    "chunk_index": chunk.index,
                    "start_seconds": chunk.start,
                    "end_seconds": chunk.end,
                    "audio_key": key,
                }
            )
    with session_scope(ctx.sessions) as session:
        duration = float(plan[-1]["end_seconds"])
        if JobRepository(session).claim_plan(job_id, duration=duration, chunks_total=len(plan)):
            ChunkRepository(session).add_plan(job_id, plan)
            return list(range(len(plan)))
        # A concurrent run recorded the same plan first; it also enqueues the chunks.
        return []


@dataclass(frozen=True)
class ChunkWork:
    """What transcribing one chunk needs, read from SQL before the slow part."""

    job_id: str
    index: int
    audio_key: str
    language: str | None
    backend: Backend
    speakers: bool
    # The provider's transcript of this chunk, created by an earlier attempt.
    transcript_id: str | None


def transcribe_chunk(job_id: str, index: int) -> str:
    ctx = current()
    with session_scope(ctx.sessions) as session:
        chunks = ChunkRepository(session)
        chunk, job = chunks.get_by_index(job_id, index), JobRepository(session).get(job_id)
        if chunk is None or job is None or job.status.is_final or not _open(chunk):
            return "skipped"
        chunks.mark_started(chunk)
        offset = chunk.start_seconds
        work = ChunkWork(
            job_id=job_id,
            index=index,
            audio_key=chunk.audio_key,
            language=job.language,
            backend=ctx.backend_for(job.backend),
            speakers=job.mode == Mode.DIALOGUE,
            transcript_id=chunk.provider_transcript_id,
        )
    started = time.monotonic()
    try:
        result = _transcribe(ctx, work)
    except PermanentTranscriptionError as exc:
        # A retry would fail the same way: fail the chunk now; the merge fails the job with why.
        _record_chunk_error(ctx, job_id, index, exc, final=True)
        return "failed"
    except Exception as exc:
        _record_chunk_error(ctx, job_id, index, exc)
        raise
    seconds = time.monotonic() - started
    segments = shift_segments(result.segments, offset)
    with session_scope(ctx.sessions) as session:
        stored = ChunkRepository(session).complete_once(
            job_id,
            index,
            text=" ".join(s["text"] for s in segments if s["text"]),
            segments=segments,
            language=result.language,
            seconds=seconds,
        )
        if stored:
            JobRepository(session).increment_completed(job_id)
    event = "chunk.transcribed" if stored else "chunk.duplicate_discarded"
    log.info(event, job_id=job_id, chunk_index=index, backend=work.backend.value, seconds=round(seconds, 3))
    return "transcribed" if stored else "duplicate"


def _transcribe(ctx: WorkerContext, work: ChunkWork) -> ChunkTranscript:
    transcriber = ctx.transcriber_for(work.backend)
    if isinstance(transcriber, HostedTranscriber):
        return _transcribe_hosted(ctx, transcriber, work)
    if work.speakers:
        raise PermanentTranscriptionError(
            f"the {work.backend.value} backend cannot label speakers (mode 'dialogue')"
        )
    with ctx.storage.local_path(work.audio_key) as path:
        return transcriber.transcribe(path, work.language)


def _transcribe_hosted(
    ctx: WorkerContext, transcriber: HostedTranscriber, work: ChunkWork
) -> ChunkTranscript:
    """Submit the chunk once, and commit the transcript id before waiting for the transcript.

    A retry (a 5xx or a timeout while polling, a worker that died) finds the id and collects that
    transcript, so the provider bills the chunk once. A transcript that ended in error fails the
    chunk for good; one the provider no longer knows is submitted again. The one gap: a crash
    between the provider accepting the transcript and the commit of its id submits the chunk again.
    """
    if work.transcript_id is not None:
        try:
            return transcriber.collect(work.transcript_id)
        except ProviderTranscriptGone as exc:
            log.warning(
                "chunk.provider_transcript_gone",
                job_id=work.job_id,
                chunk_index=work.index,
                transcript_id=work.transcript_id,
                error=str(exc),
            )
    with ctx.storage.local_path(work.audio_key) as path:
        transcript_id = transcriber.submit(path, work.language, speakers=work.speakers)
    with session_scope(ctx.sessions) as session:
        ChunkRepository(session).remember_transcript(work.job_id, work.index, transcript_id)
    log.info("chunk.submitted", job_id=work.job_id, chunk_index=work.index, transcript_id=transcript_id)
    return transcriber.collect(transcript_id)


def _record_chunk_error(
    ctx: WorkerContext, job_id: str, index: int, exc: Exception, *, final: bool = False
) -> None:
    final = final or _is_last_attempt()
    # A permanent error's message is written for users; anything else keeps its type for context.
    error = str(exc) if isinstance(exc, PermanentTranscriptionError) else f"{type(exc).__name__}: {exc}"
    with session_scope(ctx.sessions) as session:
        chunks = ChunkRepository(session)
        chunk = chunks.get_by_index(job_id, index)
        if chunk is not None and _open(chunk):
            status = ChunkStatus.FAILED if final else ChunkStatus.PENDING
            chunks.update(chunk, status=status, error=error)
    log.warning("chunk.error", job_id=job_id, chunk_index=index, error=str(exc), final=final)


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
        if any(c.status in UNFINISHED for c in chunks):
            # An early merge (re-enqueued during a recovery) leaves the job to the last chunk's
            # merge, or to the reconciler; only chunks that failed for good fail the job.
            log.info("merge.waiting", job_id=job_id)
            return "waiting"
        unfinished = [c for c in chunks if _open(c)]
        if unfinished or not chunks:
            jobs.fail(job, _unfinished_message(unfinished))
            log.warning("job.failed", job_id=job_id, error=job.error)
            return "failed"
        transcript = merge_chunks(chunks)
        for fmt in TranscriptFormat:
            ctx.storage.put_bytes(transcript_key(job_id, fmt.value), render(transcript, fmt).encode())
        if not jobs.complete(job, text=transcript.text, detected_language=transcript.language):
            # A concurrent merge finished the job first; its transcript files are the same.
            log.info("merge.duplicate_discarded", job_id=job_id)
            return "duplicate"
    log.info("job.completed", job_id=job_id, chunks=len(chunks), duration=transcript.duration)
    return "completed"


def _unfinished_message(unfinished: list[Chunk]) -> str:
    if not unfinished:
        return "the audio produced no chunks"
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
