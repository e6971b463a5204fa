"""The SQL behind a job's queue position and ETA (`api.queue_estimates`): the work each active job
still owes, and how fast the fleet has been getting through work lately."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from core.enums import Backend, ChunkStatus, Priority
from repositories.jobs import ACTIVE
from repositories.models import Chunk, Job

# Busy intervals read at most, newest first: enough for any trailing window of a busy fleet.
MAX_INTERVALS = 5000

_UNFINISHED = Chunk.status.in_((ChunkStatus.PENDING, ChunkStatus.PROCESSING))
_DONE = Chunk.status == ChunkStatus.COMPLETED
_SECONDS = Chunk.end_seconds - Chunk.start_seconds


@dataclass(frozen=True)
class JobWork:
    """An active job and the work it still owes, as its rows say now."""

    id: str
    priority: Priority
    created_at: datetime
    backend: Backend | None
    chunks_total: int | None  # None while the chunk plan is incomplete
    audio_seconds: float | None  # the audio it transcribes; None while unknown (a URL not fetched)
    chunk_rows: int  # chunks planned so far
    unfinished_chunks: int
    unfinished_seconds: float
    completed_chunks: int
    completed_seconds: float


class BacklogRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def work_of(self, job_id: str) -> JobWork | None:
        """The job's own work, if it is active."""
        found = self._work(Job.id == job_id)
        return found[0] if found else None

    def work_ahead(self, job: JobWork) -> Sequence[JobWork]:
        """Every other active job served before `job` or alongside it: those of a higher priority,
        and those of its priority submitted before it."""
        higher = [p for p in Priority if p.rank > job.priority.rank]
        earlier = or_(
            Job.created_at < job.created_at, and_(Job.created_at == job.created_at, Job.id < job.id)
        )
        return self._work(
            Job.id != job.id, or_(Job.priority.in_(higher), and_(Job.priority == job.priority, earlier))
        )

    def _work(self, *where: ColumnElement[bool]) -> list[JobWork]:
        """One query: per active job matching `where`, its chunks counted and summed by state."""
        stmt = (
            select(
                Job.id,
                Job.priority,
                Job.created_at,
                Job.backend,
                Job.chunks_total,
                Job.audio_duration_seconds,
                func.count(Chunk.id),
                _count_if(_UNFINISHED),
                _sum_if(_UNFINISHED, _SECONDS),
                _count_if(_DONE),
                _sum_if(_DONE, _SECONDS),
            )
            .outerjoin(Chunk, Chunk.job_id == Job.id)
            .where(Job.status.in_(ACTIVE), *where)
            .group_by(Job.id)
        )
        return [_job_work(row) for row in self.session.execute(stmt).all()]

    def busy_intervals(self, since: datetime) -> list[tuple[datetime, datetime | None]]:
        """(submitted, ended) of the jobs in the pipeline at some time since `since`, ended None
        for those still active: while one is, the fleet has work (queue waits, cutting, merging
        and the pauses between tasks included)."""
        stmt = (
            select(Job.created_at, Job.completed_at)
            .where(or_(Job.completed_at >= since, and_(Job.completed_at.is_(None), Job.status.in_(ACTIVE))))
            .order_by(Job.created_at.desc())
            .limit(MAX_INTERVALS)
        )
        return [(created, ended) for created, ended in self.session.execute(stmt).all()]

    def transcribed(self, since: datetime) -> tuple[int, float]:
        """The chunks the fleet transcribed since `since`, and the seconds of audio (chunk
        timelines) they held."""
        stmt = select(func.count(), func.coalesce(func.sum(cast(_SECONDS, Float)), 0.0)).where(
            _DONE, Chunk.completed_at >= since
        )
        chunks, audio = self.session.execute(stmt).one()
        return int(chunks), float(audio)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _sum_if(condition: ColumnElement[bool], value: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, cast(value, Float)), else_=0.0)), 0.0)


def _job_work(row: Any) -> JobWork:
    id_, priority, created, backend, total, audio, rows, unfinished, unfinished_s, done, done_s = row
    return JobWork(
        id=id_,
        priority=priority,
        created_at=created,
        backend=backend,
        chunks_total=total,
        audio_seconds=audio,
        chunk_rows=int(rows),
        unfinished_chunks=int(unfinished),
        unfinished_seconds=float(unfinished_s),
        completed_chunks=int(done),
        completed_seconds=float(done_s),
    )
