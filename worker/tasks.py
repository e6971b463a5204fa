"""The pipeline stages RQ runs, by name: prepare → transcribe_chunk (one per chunk) → merge.

Each stage takes ids only, is safe to run twice, and keeps database transactions short: slow work
(decoding, transcription) happens between two small units of work, never inside one. Unexpected
errors are raised so that RQ retries the stage; on the last attempt the failure is recorded in SQL,
which is what users see.
"""

import time
from typing import Any

from rq import get_current_job
from sqlalchemy.orm import Session

from core.db import session_scope
from core.enums import ChunkStatus, Tier, TranscriptFormat
from core.logging import get_logger
from core.tiers import policy_for
from repositories.chunks import CLOSED, UNFINISHED, ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Chunk
from repositories.users import UserRepository
from storage.keys import chunk_key, chunks_prefix, transcript_key
from worker.audio import AudioDecodeError, iter_chunks
from worker.backends.base import PermanentTranscriptionError
from worker.context import WorkerContext, current
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
        tier = _owner_tier(session, job.user_id)
        pending = [c.chunk_index for c in ChunkRepository(session).list_for_job(job_id) if _open(c)]
    if not planned:
        try:
            pending = _plan_chunks(ctx, job_id, source, tier)
        except (AudioDecodeError, TooLong) as exc:
            fail_job(ctx, job_id, str(exc))
            return "failed"
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


def _plan_chunks(ctx: WorkerContext, job_id: str, source: str, tier: Tier) -> list[int]:
    """Cut the source into chunk WAVs in storage, then record the plan. Returns the chunk indexes."""
    plan: list[dict[str, Any]] = []
    max_minutes = policy_for(tier).max_duration_minutes
    with ctx.storage.local_path(source) as path:
        for chunk in iter_chunks(path, ctx.settings.chunk_seconds_for_backend):
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


def transcribe_chunk(job_id: str, index: int) -> str:
    ctx = current()
    with session_scope(ctx.sessions) as session:
        chunks = ChunkRepository(session)
        chunk, job = chunks.get_by_index(job_id, index), JobRepository(session).get(job_id)
        if chunk is None or job is None or job.status.is_final or not _open(chunk):
            return "skipped"
        chunks.mark_started(chunk)
        key, offset, language = chunk.audio_key, chunk.start_seconds, job.language
    started = time.monotonic()
    try:
        with ctx.storage.local_path(key) as path:
            result = ctx.transcriber.transcribe(path, language)
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
    log.info(event, job_id=job_id, chunk_index=index, seconds=round(seconds, 3))
    return "transcribed" if stored else "duplicate"


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
        jobs.complete(job, text=transcript.text, detected_language=transcript.language)
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
