"""Where an active job stands: its queue position and when it should be done. The one home of the
rule, read by `GET /v1/jobs/{id}` and by the job's event stream; computed from SQL alone, so every
API process gives the same answer.

`queue_position`: the chunk tasks of other jobs that the fleet transcribes before this job is done.
Every unfinished chunk of a job in a higher-priority queue counts (workers empty those first). Of a
job submitted earlier to the same queue, at most this job's own remaining chunks plus `chunk_lanes`
count: a queue interleaves its jobs' chunks lane by lane (`core.queues.LaneChain`), so a long job
ahead holds a short one back for about the short one's own work, not for its whole length. A job
whose chunk plan is not complete yet is counted from its duration (one chunk per chunk length).
0: nothing is ahead; the job's own chunks are next, or running.

`eta_seconds`: the work ahead plus the job's own work still to do, over the fleet's pace: what it
transcribed per second that it had work (some job between submission and its end) over the
trailing `PACE_WINDOW`. Counting from submission, not from the first chunk, puts what every job
costs besides its model time (the wait for a free task, cutting, merging) into the pace. A chunk
costs a fixed part (a task, its share of cutting and merging) and a part that grows with its
audio, and the fleet's history alone cannot tell the two apart; so the work is measured both ways,
in chunks and in audio seconds, and the ETA is the mean of the two answers: the audio answer alone
is short behind many short jobs, the chunk answer alone long behind a few long chunks. Before the
fleet has measured anything, `DEFAULT_PACE`.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.config import Settings
from core.enums import Backend
from repositories.backlog import BacklogRepository, JobWork
from repositories.models import utcnow

# The stretch of recent history the fleet's pace is measured over.
PACE_WINDOW = timedelta(minutes=15)
# Audio seconds per second assumed before any is measured: about one worker running the bundled
# `tiny.en` on one CPU core, chunk cutting and merging included (and a full chunk's worth of audio
# per chunk).
DEFAULT_PACE = 8.0
# Less busy time than this measures nothing reliable (one chunk's start-up dominates it).
MIN_BUSY_SECONDS = 1.0


@dataclass(frozen=True)
class Estimate:
    position: int  # chunk tasks of other jobs ahead
    eta_seconds: float  # until the job should be done


@dataclass(frozen=True)
class _Work:
    chunks: int
    seconds: float


@dataclass(frozen=True)
class Pace:
    audio_per_second: float
    chunks_per_second: float


def estimate_for(session: Session, job_id: str, settings: Settings) -> Estimate | None:
    """The job's standing; None unless it is pending or processing."""
    backlog = BacklogRepository(session)
    job = backlog.work_of(job_id)
    if job is None:
        return None
    own = _remaining(job, settings)
    ahead = [_share(other, job, own, settings) for other in backlog.work_ahead(job)]
    total = _Work(own.chunks + sum(w.chunks for w in ahead), own.seconds + sum(w.seconds for w in ahead))
    pace = fleet_pace(backlog, settings)
    by_audio, by_chunks = total.seconds / pace.audio_per_second, total.chunks / pace.chunks_per_second
    return Estimate(position=sum(w.chunks for w in ahead), eta_seconds=round((by_audio + by_chunks) / 2, 1))


def _remaining(job: JobWork, settings: Settings) -> _Work:
    """What the job still owes: its unfinished chunks; while its plan is incomplete, its whole
    duration less what is transcribed (one chunk's worth while the duration is unknown)."""
    if job.chunks_total is not None:
        return _Work(job.unfinished_chunks, job.unfinished_seconds)
    chunk_seconds = settings.chunk_seconds_for(job.backend or Backend(settings.transcription_backend))
    audio = job.audio_seconds if job.audio_seconds is not None else chunk_seconds
    planned = max(job.chunk_rows, math.ceil(audio / chunk_seconds))
    seconds = max(audio - job.completed_seconds, job.unfinished_seconds)
    return _Work(max(planned - job.completed_chunks, 1), seconds)


def _share(other: JobWork, job: JobWork, own: _Work, settings: Settings) -> _Work:
    """The part of `other`'s remaining work done before `job` is done."""
    work = _remaining(other, settings)
    if other.priority.rank > job.priority.rank or work.chunks == 0:
        return work
    chunks = min(work.chunks, own.chunks + settings.chunk_lanes)
    return _Work(chunks, work.seconds * chunks / work.chunks)


def fleet_pace(backlog: BacklogRepository, settings: Settings, now: datetime | None = None) -> Pace:
    """What the fleet transcribed per second it had work over the trailing `PACE_WINDOW`;
    `DEFAULT_PACE` when it had work too briefly to tell."""
    now = now or utcnow()
    since = now - PACE_WINDOW
    busy = busy_seconds(backlog.busy_intervals(since), since, now)
    chunks, audio = backlog.transcribed(since)
    if busy < MIN_BUSY_SECONDS or chunks == 0 or audio <= 0:
        return Pace(DEFAULT_PACE, DEFAULT_PACE / settings.chunk_seconds)
    return Pace(audio / busy, chunks / busy)


def busy_seconds(intervals: list[tuple[datetime, datetime | None]], since: datetime, now: datetime) -> float:
    """How long at least one of `intervals` (None: still going) was open within [since, now]."""
    clipped = sorted((max(start, since), min(end or now, now)) for start, end in intervals)
    total, reach = 0.0, since
    for start, end in clipped:
        if end > reach:
            total += (end - max(start, reach)).total_seconds()
            reach = end
    return total
