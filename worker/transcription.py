"""Transcribing chunks: one at a time, or several in one batched model call.

`transcribe_chunks` takes (job id, chunk index) pairs, which may belong to different jobs. Chunks
that are open and whose job is still running are marked started, in one short unit of work; those on
a batching backend (faster-whisper) are transcribed together, grouped by what the model must be told
(the language), and every result is stored once, fenced (`ChunkRepository.complete_once`). A
chunk's audio is deleted from storage once its result is stored: it is no longer needed, and a long
file must not keep a second copy of itself.

Chunks on a hosted backend (AssemblyAI) are submitted one by one, remembering the provider's
transcript id between submit and collect.
"""

import time
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.db import session_scope
from core.enums import Backend, ChunkStatus, Mode
from core.logging import get_logger
from repositories.chunks import CLOSED, ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Chunk, Job
from worker.audio import read_audio
from worker.backends.base import (
    BatchTranscriber,
    ChunkTranscript,
    HostedTranscriber,
    PermanentTranscriptionError,
    ProviderTranscriptGone,
)
from worker.context import WorkerContext
from worker.merge import needs_word_timings, place_segments

log = get_logger(__name__)

Pair = tuple[str, int]


@dataclass(frozen=True)
class ChunkWork:
    """What transcribing one chunk needs, read from SQL before the slow part."""

    job_id: str
    index: int
    audio_key: str
    spans: list[list[float]]
    language: str | None
    backend: Backend
    speakers: bool
    # The provider's transcript of this chunk, created by an earlier attempt.
    transcript_id: str | None

    @property
    def pair(self) -> Pair:
        return self.job_id, self.index


# What became of a claimed chunk: "transcribed" or "duplicate"; the exception that stopped it; or
# the chunk itself, left to be transcribed on its own (`transcribe_one`).
Outcome = str | Exception | ChunkWork


class ChunkFailed(Exception):
    """A chunk failed for good (a permanent error): recorded, nothing to retry."""


def is_open(chunk: Chunk) -> bool:
    return chunk.status not in CLOSED


def claim(ctx: WorkerContext, pairs: list[Pair]) -> list[ChunkWork]:
    """Mark the open chunks of running jobs started, and say what transcribing each needs."""
    works: list[ChunkWork] = []
    with session_scope(ctx.sessions) as session:
        chunks, jobs = ChunkRepository(session), JobRepository(session)
        # A task queued twice (a recovery) is one chunk: claimed, and counted as an attempt, once.
        for job_id, index in dict.fromkeys(pairs):
            chunk, job = chunks.get_by_index(job_id, index), jobs.get(job_id)
            if chunk is None or job is None or job.status.is_final or not is_open(chunk):
                continue
            chunks.mark_started(chunk)
            works.append(_work(ctx, job, chunk))
    return works


def _work(ctx: WorkerContext, job: Job, chunk: Chunk) -> ChunkWork:
    return ChunkWork(
        job_id=job.id,
        index=chunk.chunk_index,
        audio_key=chunk.audio_key,
        spans=chunk.speech_spans,
        language=job.language,
        backend=ctx.backend_for(job.backend),
        speakers=job.mode == Mode.DIALOGUE,
        transcript_id=chunk.provider_transcript_id,
    )


def transcribe_batch(ctx: WorkerContext, works: list[ChunkWork]) -> dict[Pair, Outcome]:
    """Transcribe the claimed chunks that a batching backend can take together; store each result.

    Returns every chunk's outcome: "transcribed" or "duplicate"; the exception that stopped it (a
    chunk whose audio cannot be read fails alone, a failed model call fails its group, a backend
    this service cannot run fails for good); or, for a chunk a batch cannot take (a hosted
    backend, speaker labels), its `ChunkWork`, for `transcribe_one`. A failed chunk stays started:
    its task decides between retry and failure.
    """
    groups: dict[tuple[Backend, str | None], list[ChunkWork]] = defaultdict(list)
    outcomes: dict[Pair, Outcome] = {}
    for work in works:
        try:
            batching = not work.speakers and isinstance(ctx.transcriber_for(work.backend), BatchTranscriber)
        except PermanentTranscriptionError as exc:  # this service cannot run the backend at all
            outcomes[work.pair] = exc
            continue
        if batching:
            groups[(work.backend, work.language)].append(work)
        else:
            outcomes[work.pair] = work
    for (backend, _), group in groups.items():
        transcriber = ctx.transcriber_for(backend)
        assert isinstance(transcriber, BatchTranscriber)
        outcomes |= _transcribe_group(ctx, transcriber, group)
    return outcomes


def _transcribe_group(
    ctx: WorkerContext, transcriber: BatchTranscriber, group: list[ChunkWork]
) -> dict[Pair, Outcome]:
    outcomes: dict[Pair, Outcome] = {}
    started = time.monotonic()
    ready, audios = [], []
    for work in group:
        try:
            with ctx.storage.local_path(work.audio_key) as path:
                audios.append(read_audio(path))
            ready.append(work)
        except Exception as exc:
            outcomes[work.pair] = exc
    if not ready:
        return outcomes
    try:
        results = transcriber.transcribe_many(
            audios, [w.language for w in ready], words=[needs_word_timings(w.spans) for w in ready]
        )
    except Exception as exc:
        return outcomes | {work.pair: exc for work in ready}
    seconds = (time.monotonic() - started) / len(ready)
    for work, result in zip(ready, results, strict=True):
        try:
            outcomes[work.pair] = store(ctx, work, result, seconds, batch=len(ready))
        except Exception as exc:
            outcomes[work.pair] = exc
    return outcomes


def transcribe_one(ctx: WorkerContext, work: ChunkWork) -> str:
    """Transcribe one claimed chunk on its own. A permanent error fails the chunk (`ChunkFailed`)."""
    started = time.monotonic()
    try:
        result = _transcribe(ctx, work)
    except PermanentTranscriptionError as exc:
        # A retry would fail the same way: fail the chunk now; the merge fails the job with why.
        record_error(ctx, work.pair, exc, final=True)
        raise ChunkFailed(str(exc)) from exc
    return store(ctx, work, result, time.monotonic() - started, batch=1)


def _transcribe(ctx: WorkerContext, work: ChunkWork) -> ChunkTranscript:
    transcriber = ctx.transcriber_for(work.backend)
    if isinstance(transcriber, HostedTranscriber):
        return _transcribe_hosted(ctx, transcriber, work)
    if work.speakers:
        raise PermanentTranscriptionError(
            f"the {work.backend.value} backend cannot label speakers (mode 'dialogue')"
        )
    with ctx.storage.local_path(work.audio_key) as path:
        if isinstance(transcriber, BatchTranscriber):
            audio = read_audio(path)
            return transcriber.transcribe_many(
                [audio], [work.language], words=[needs_word_timings(work.spans)]
            )[0]
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


def store(ctx: WorkerContext, work: ChunkWork, result: ChunkTranscript, seconds: float, *, batch: int) -> str:
    """Record the chunk's result unless one is recorded already; then its audio can go."""
    segments = place_segments(result.segments, work.spans, words=_keeps_words(ctx, work))
    with session_scope(ctx.sessions) as session:
        stored = ChunkRepository(session).complete_once(
            work.job_id,
            work.index,
            text=" ".join(s["text"] for s in segments if s["text"]),
            segments=segments,
            language=result.language,
            seconds=seconds,
        )
        if stored:
            JobRepository(session).increment_completed(work.job_id)
    if stored:
        ctx.storage.delete(work.audio_key)
    event = "chunk.transcribed" if stored else "chunk.duplicate_discarded"
    log.info(
        event,
        job_id=work.job_id,
        chunk_index=work.index,
        backend=work.backend.value,
        seconds=round(seconds, 3),
        batch=batch,
    )
    return "transcribed" if stored else "duplicate"


def _keeps_words(ctx: WorkerContext, work: ChunkWork) -> bool:
    """Word timings reach the transcript from a hosted backend always, from the local model when
    the service is set to keep them (it may compute some only to place segments)."""
    return work.backend != Backend.LOCAL or ctx.settings.whisper_word_timestamps


def record_error(ctx: WorkerContext, pair: Pair, exc: Exception, *, final: bool) -> None:
    # A permanent error's message is written for users; anything else keeps its type for context.
    error = str(exc) if isinstance(exc, PermanentTranscriptionError) else f"{type(exc).__name__}: {exc}"
    job_id, index = pair
    with session_scope(ctx.sessions) as session:
        _set_error(session, job_id, index, error, final)
    log.warning("chunk.error", job_id=job_id, chunk_index=index, error=str(exc), final=final)


def _set_error(session: Session, job_id: str, index: int, error: str, final: bool) -> None:
    chunks = ChunkRepository(session)
    chunk = chunks.get_by_index(job_id, index)
    if chunk is not None and is_open(chunk):
        chunks.update(chunk, status=ChunkStatus.FAILED if final else ChunkStatus.PENDING, error=error)
