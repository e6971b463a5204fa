"""The SQL figures behind `/metrics`, computed at scrape time.

Every API process computes them from the same tables, so any number of processes report the same
values with no shared metrics state. A histogram is bucketed by the database in one query
(`SUM(CASE WHEN x <= le ...)` per bucket), so a scrape transfers a row per label value, not a row
per chunk.

The duration histograms cover what ended in a trailing window rather than all time: rows leave the
tables (retention, deletes), so all-time counts would fall now and then, which Prometheus reads as
a counter reset. Within a window the buckets answer "how long did things take lately" directly:
`histogram_quantile(0.95, verbatim_job_latency_seconds_bucket)`, without `rate()`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, func, literal, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.enums import ChunkStatus, JobStatus, Priority
from repositories.base import seconds_between
from repositories.models import Chunk, Job

# A column or an expression over columns.
Expr = ColumnElement[Any] | InstrumentedAttribute[Any]

TRANSCRIBE_SECONDS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
REAL_TIME_FACTOR_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)
QUEUE_WAIT_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
LATENCY_BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


@dataclass(frozen=True)
class Histogram:
    bounds: tuple[float, ...]  # the finite upper bounds, ascending; +Inf is `count`
    cumulative: tuple[int, ...]  # how many values are <= each bound
    count: int
    total: float

    @classmethod
    def empty(cls, bounds: Sequence[float]) -> "Histogram":
        return cls(tuple(float(b) for b in bounds), tuple(0 for _ in bounds), 0, 0.0)


class MetricsRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def jobs_by_status(self) -> dict[tuple[JobStatus, Priority], int]:
        """Every (status, priority) pair, zero included, so the series never vanish."""
        counts = {(s, p): 0 for s in JobStatus for p in Priority}
        stmt = select(Job.status, Job.priority, func.count()).group_by(Job.status, Job.priority)
        for status, priority, count in self.session.execute(stmt).all():
            counts[(status, priority)] = int(count)
        return counts

    def chunk_transcribe_seconds(self, since: datetime) -> Histogram:
        """Model time per chunk, over chunks completed since `since`."""
        value = Chunk.transcribe_seconds
        return self._histogram(value, TRANSCRIBE_SECONDS_BUCKETS, *self._chunks_done(since))

    def chunk_real_time_factor(self, since: datetime) -> Histogram:
        """Model time / audio time per chunk (below 1: faster than real time)."""
        value = Chunk.transcribe_seconds / (Chunk.end_seconds - Chunk.start_seconds)
        return self._histogram(
            value,
            REAL_TIME_FACTOR_BUCKETS,
            *self._chunks_done(since),
            Chunk.end_seconds > Chunk.start_seconds,
        )

    def queue_wait_seconds(self, since: datetime) -> dict[Priority, Histogram]:
        """Created → started (the worker recorded the job's chunk plan), per priority, over jobs
        started since `since`."""
        value = seconds_between(self.session, Job.started_at, Job.created_at)
        return self._per_priority(value, QUEUE_WAIT_BUCKETS, Job.started_at >= since)

    def job_latency_seconds(self, since: datetime) -> dict[Priority, Histogram]:
        """Created → completed, per priority, over jobs completed since `since` (failed and
        canceled jobs are left out: their latency says nothing about the service's speed)."""
        value = seconds_between(self.session, Job.completed_at, Job.created_at)
        return self._per_priority(
            value, LATENCY_BUCKETS, Job.status == JobStatus.COMPLETED, Job.completed_at >= since
        )

    def _chunks_done(self, since: datetime) -> tuple[ColumnElement[bool], ...]:
        return (
            Chunk.status == ChunkStatus.COMPLETED,
            Chunk.completed_at >= since,
            Chunk.transcribe_seconds.is_not(None),
        )

    def _histogram(self, value: Expr, bounds: Sequence[float], *where: ColumnElement[bool]) -> Histogram:
        found = self._histograms(value, literal("all"), bounds, *where)
        return found.get("all") or Histogram.empty(bounds)

    def _per_priority(
        self, value: Expr, bounds: Sequence[float], *where: ColumnElement[bool]
    ) -> dict[Priority, Histogram]:
        found = self._histograms(value, Job.priority, bounds, *where)
        return {p: found.get(p) or Histogram.empty(bounds) for p in Priority}

    def _histograms(
        self,
        value: Expr,
        group: Expr,
        bounds: Sequence[float],
        *where: ColumnElement[bool],
    ) -> dict[Any, Histogram]:
        """One query: per group value, the cumulative count under each bound, the count, the sum."""
        rows = (
            select(cast(value, Float).label("v"), group.label("g"))
            .where(value.is_not(None), *where)
            .subquery()
        )
        v = rows.c.v
        stmt = select(
            rows.c.g,
            func.count(v),
            func.coalesce(func.sum(v), 0.0),
            *(func.sum(case((v <= float(b), 1), else_=0)) for b in bounds),
        ).group_by(rows.c.g)
        result: dict[Any, Histogram] = {}
        for g, count, total, *cumulative in self.session.execute(stmt).all():
            result[g] = Histogram(
                tuple(float(b) for b in bounds), tuple(int(c) for c in cumulative), int(count), float(total)
            )
        return result
