"""Transcribing chunks: one at a time, or several in one batched model call.

`transcribe_chunks` takes (job id, chunk index) pairs, which may belong to different jobs. Chunks
that are open and whose job is still running are marked started, in one short unit of work; those on
a batching backend (faster-whisper) are transcribed together, grouped by model and by what the model
must be told (the language, and the job's task, prompt and hotwords: `ChunkWork.batch_key`), and
every result is stored once, fenced (`ChunkRepository.complete_once`). A chunk's audio is deleted
from storage once its result is stored: it is no longer needed, and a long file must not keep a
second copy of itself.

Chunks on a hosted backend (AssemblyAI) are submitted one by one, remembering the provider's
transcript id between submit and collect.

A dialogue chunk's voice prints are stored with its result, taken from its audio before the audio
goes: the merge tells the job's speakers apart by them (`worker.speakers`).
"""

import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from core.db import session_scope
from core.enums import Backend, ChunkStatus, Mode
from core.logging import get_logger
from core.options import TranscriptionOptions
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
from worker.speakers import Voice, voice_prints

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
    # The job's options, `model` resolved (the fleet's default model where the job named none).
    options: TranscriptionOptions = field(default_factory=TranscriptionOptions)

    @property
    def pair(self) -> Pair:
        return self.job_id, self.index

    @property
    def model(self) -> str | None:
        return self.options.model

    @property
    def batch_key(self) -> tuple[object, ...]:
        """What chunks of one model call share: the model, and everything it is told."""
        return (self.backend, self.language, *self.options.decode_key())


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
    options = TranscriptionOptions.of(job.options)
    return ChunkWork(
        job_id=job.id,
        index=chunk.chunk_index,
        audio_key=chunk.audio_key,
        spans=chunk.speech_spans,
        # What the job named, else what `prepare` detected in its first speech (None: each chunk's).
        language=job.language or job.detected_language,
        backend=ctx.backend_for(job.backend),
        speakers=job.mode == Mode.DIALOGUE,
        transcript_id=chunk.provider_transcript_id,
        options=replace(options, model=options.model or ctx.settings.default_model_name),
    )


def transcribe_batch(ctx: WorkerContext, works: list[ChunkWork]) -> dict[Pair, Outcome]:
    """Transcribe the claimed chunks that a batching backend can take together; store each result.

    Returns every chunk's outcome: "transcribed" or "duplicate"; the exception that stopped it (a
    chunk whose audio cannot be read fails alone, a failed model call fails its group, a backend
    this service cannot run fails for good); or, for a chunk a batch cannot take (a hosted
    backend), its `ChunkWork`, for `transcribe_one`. A failed chunk stays started:
    its task decides between retry and failure.
    """
    groups: dict[tuple[object, ...], list[ChunkWork]] = defaultdict(list)
    outcomes: dict[Pair, Outcome] = {}
    for work in works:
        try:
            transcriber = ctx.transcriber_for(work.backend, work.model)
        except PermanentTranscriptionError as exc:  # this service cannot run the backend or model
            outcomes[work.pair] = exc
            continue
        if isinstance(transcriber, BatchTranscriber):
            groups[work.batch_key].append(work)
        else:
            outcomes[work.pair] = work
    for group in groups.values():
        transcriber = ctx.transcriber_for(group[0].backend, group[0].model)
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
        results = _transcribe_many(transcriber, audios, ready)
    except Exception as exc:
        return outcomes | {work.pair: exc for work in ready}
    seconds = (time.monotonic() - started) / len(ready)
    for work, result in zip(ready, results, strict=True):
        try:
            outcomes[work.pair] = store(ctx, work, result, seconds, batch=len(ready))
        except Exception as exc:
            outcomes[work.pair] = exc
    return outcomes


def _transcribe_many(
    transcriber: BatchTranscriber, audios: list[npt.NDArray[np.float32]], works: list[ChunkWork]
) -> list[ChunkTranscript]:
    """One model call for chunks that share a `batch_key`: what the model is told is the first's."""
    options = works[0].options
    return transcriber.transcribe_many(
        audios,
        [w.language for w in works],
        words=[w.options.words or w.speakers or needs_word_timings(w.spans) for w in works],
        task=options.task,
        prompt=options.prompt,
        hotwords=options.hotwords,
    )


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
    transcriber = ctx.transcriber_for(work.backend, work.model)
    if isinstance(transcriber, HostedTranscriber):
        return _transcribe_hosted(ctx, transcriber, work)
    with ctx.storage.local_path(work.audio_key) as path:
        if isinstance(transcriber, BatchTranscriber):
            return _transcribe_many(transcriber, [read_audio(path)], [work])[0]
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
    voices = _voices(ctx, work)
    with session_scope(ctx.sessions) as session:
        stored = ChunkRepository(session).complete_once(
            work.job_id,
            work.index,
            text=" ".join(s["text"] for s in segments if s["text"]),
            segments=segments,
            language=result.language,
            seconds=seconds,
            voices=voices,
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


def _voices(ctx: WorkerContext, work: ChunkWork) -> list[Voice] | None:
    """A dialogue chunk's voice prints, taken from its audio while it is still stored: the merge
    tells its speakers apart by them, across the whole job (`worker.speakers`)."""
    if not work.speakers:
        return None
    with ctx.storage.local_path(work.audio_key) as path:
        return voice_prints(read_audio(path), work.spans, threads=ctx.settings.whisper_threads)


def _keeps_words(ctx: WorkerContext, work: ChunkWork) -> bool:
    """Word timings reach the transcript when the job asks for them (`timestamps=word`), from a
    hosted backend always, and from the local model when the service is set to keep them (it may
    compute some only to place segments)."""
    keeps = work.options.words or work.speakers  # a dialogue job's words carry their speakers
    return keeps or work.backend != Backend.LOCAL or ctx.settings.whisper_word_timestamps


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
