from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, delete, func, literal, or_, select, text, update
from sqlalchemy.orm import defer
from sqlalchemy.orm.attributes import set_committed_value

from core.enums import ChunkStatus, JobStatus
from repositories.base import Repository, seconds_between
from repositories.models import Chunk, Job, utcnow
from repositories.webhooks import record_job_event

# Jobs billed their whole audio duration: completed work, and work in flight (reserved while it
# runs). A failed or canceled job is billed the audio of the chunks it did transcribe, which its
# owner can read (GET /v1/jobs/{id}/chunks) whatever the job's end: see `billed_seconds`.
BILLED_IN_FULL = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETED)
ACTIVE = (JobStatus.PENDING, JobStatus.PROCESSING)

SORTS: dict[str, Any] = {
    "created_at": Job.created_at,
    "completed_at": Job.completed_at,
    "duration": Job.audio_duration_seconds,
    "filename": Job.filename,
}
# A page's total is counted up to this many jobs past its offset, no further: a deep count of a
# large history costs every page as much as the whole history. Past it the total is a lower bound.
COUNT_AHEAD = 1000
# /health counts jobs exactly up to this many; past it PostgreSQL's estimate stands in.
EXACT_JOBS_COUNT = 10_000


@dataclass(frozen=True)
class JobPage:
    items: Sequence[Job]
    total: int
    # False when `total` stopped at the count's ceiling: there are at least `total` jobs.
    exact: bool


def substring_pattern(text: str) -> str:
    """A LIKE pattern that finds `text` anywhere, its own `%`, `_` and `/` taken literally."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class JobFilter:
    status: JobStatus | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    language: str | None = None
    q: str | None = None
    sort: str = "-created_at"

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        conditions: list[ColumnElement[bool]] = []
        if self.status is not None:
            conditions.append(Job.status == self.status)
        if self.created_after is not None:
            conditions.append(Job.created_at >= self.created_after)
        if self.created_before is not None:
            conditions.append(Job.created_at < self.created_before)
        if self.language is not None:
            conditions.append(or_(Job.language == self.language, Job.detected_language == self.language))
        if self.q:
            # ILIKE, which PostgreSQL's trigram indexes serve (SQLite: lower() LIKE lower()).
            pattern = substring_pattern(self.q)
            conditions.append(
                or_(Job.filename.ilike(pattern, escape="/"), Job.transcript_text.ilike(pattern, escape="/"))
            )
        return stmt.where(*conditions)

    def order(self, stmt: Select[Any]) -> Select[Any]:
        """Ties broken by id in the same direction, and NULLS LAST only where a column has nulls:
        so `created_at` either way walks `ix_jobs_user_id_created_at` and stops at the page."""
        column = SORTS[self.sort.removeprefix("-")]
        descending = self.sort.startswith("-")
        key, tie = (column.desc(), Job.id.desc()) if descending else (column.asc(), Job.id.asc())
        return stmt.order_by(key.nulls_last() if column.nullable else key, tie)


_PG_ROW_ESTIMATE = text(
    "SELECT (reltuples / relpages) * (pg_relation_size(oid) / current_setting('block_size')::int)"
    " FROM pg_class WHERE oid = 'jobs'::regclass AND relpages > 0 AND reltuples >= 0"
)


class JobRepository(Repository[Job]):
    model = Job

    def get_for_owner(self, job_id: str, user_id: str) -> Job | None:
        return self.get_one_or_none(select(Job).where(Job.id == job_id, Job.user_id == user_id))

    def list_for_owner(
        self,
        user_id: str,
        limit: int,
        offset: int,
        filters: JobFilter | None = None,
        *,
        exact_total: bool = False,
    ) -> JobPage:
        """A page of the owner's jobs (without their transcripts) and the total before paging:
        exact if asked, or when fewer than `COUNT_AHEAD` jobs follow the page's offset."""
        filters = filters or JobFilter()
        stmt = filters.order(filters.apply(select(Job).where(Job.user_id == user_id)))
        stmt = stmt.options(defer(Job.transcript_text, raiseload=True))
        items = self.session.execute(stmt.limit(limit).offset(offset)).scalars().all()
        if len(items) < limit and (items or offset == 0):
            return JobPage(items, offset + len(items), exact=True)  # the last page: nothing to count
        matching = filters.apply(select(literal(1)).select_from(Job).where(Job.user_id == user_id))
        if exact_total:
            return JobPage(items, self.count(matching), exact=True)
        ceiling = offset + COUNT_AHEAD
        total = self.count(matching.limit(ceiling))
        return JobPage(items, total, exact=total < ceiling)

    def estimated_count(self) -> int:
        """How many jobs there are, in about constant time: exact up to `EXACT_JOBS_COUNT`; past
        it, on PostgreSQL, the planner's estimate (rows per page at the last ANALYZE times the
        table's pages now). SQLite, the embedded default, counts them all."""
        counted = self.count(select(literal(1)).select_from(Job).limit(EXACT_JOBS_COUNT))
        if counted < EXACT_JOBS_COUNT:
            return counted
        if self.session.get_bind().dialect.name != "postgresql":
            return self.count()
        estimate = self.session.execute(_PG_ROW_ESTIMATE).scalar_one_or_none()
        return max(counted, int(estimate or 0))

    def count_by_status(self, user_id: str | None = None) -> dict[JobStatus, int]:
        stmt = select(Job.status, func.count()).group_by(Job.status)
        if user_id is not None:
            stmt = stmt.where(Job.user_id == user_id)
        return {status: int(count) for status, count in self.session.execute(stmt).all()}

    def list_active(self, created_before: datetime) -> Sequence[Job]:
        """Pending and processing jobs, oldest first: the work the fleet still owes."""
        stmt = (
            select(Job)
            .where(Job.status.in_(ACTIVE), Job.created_at < created_before)
            .order_by(Job.created_at)
        )
        return self.session.execute(stmt).scalars().all()

    def count_active(self, user_id: str) -> int:
        return self.count(select(Job).where(Job.user_id == user_id, Job.status.in_(ACTIVE)))

    def billed_seconds(self, user_id: str, since: datetime) -> float:
        """The audio seconds billed for the user's jobs created since `since`: the one rule that both
        the monthly quota and the usage report read.

        A job in flight or completed counts its duration; a failed or canceled one the timeline its
        completed chunks cover (each chunk once: one row per index, completed at most once)."""
        transcribed = (
            select(func.coalesce(func.sum(Chunk.end_seconds - Chunk.start_seconds), 0.0))
            .where(Chunk.job_id == Job.id, Chunk.status == ChunkStatus.COMPLETED)
            .scalar_subquery()
        )
        billed = case(
            (Job.status.in_(BILLED_IN_FULL), func.coalesce(Job.audio_duration_seconds, 0.0)),
            else_=transcribed,
        )
        stmt = select(func.coalesce(func.sum(billed), 0.0)).where(
            Job.user_id == user_id, Job.created_at >= since
        )
        return float(self.session.execute(stmt).scalar_one() or 0.0)

    def completed_figures(self, user_id: str | None) -> tuple[float, float | None]:
        """(audio seconds transcribed, average processing seconds) over completed jobs."""
        stmt = select(
            func.coalesce(func.sum(Job.audio_duration_seconds), 0.0),
            func.avg(seconds_between(self.session, Job.completed_at, Job.started_at)),
        ).where(Job.status == JobStatus.COMPLETED)
        if user_id is not None:
            stmt = stmt.where(Job.user_id == user_id)
        audio, average = self.session.execute(stmt).one()
        return float(audio), None if average is None else float(average)

    def start_processing(self, job_id: str) -> None:
        """A pending job whose first chunk is cut: processing from now on."""
        self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.PENDING)
            .values(status=JobStatus.PROCESSING, started_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    def claim_plan(self, job_id: str, *, duration: float, chunks_total: int) -> bool:
        """Record that a job's chunk plan is complete, unless that is recorded already. True if this
        call recorded it. Its chunks may already be transcribing: their count is left alone.

        A conditional UPDATE, so that of two concurrent `prepare` runs exactly one records the plan.
        """
        result = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.chunks_total.is_(None), Job.status.in_(ACTIVE))
            .values(
                status=JobStatus.PROCESSING,
                audio_duration_seconds=duration,
                chunks_total=chunks_total,
                started_at=func.coalesce(Job.started_at, utcnow()),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def record_detected_language(self, job_id: str, language: str, probability: float) -> None:
        """The language found in a job's first speech: every chunk of the job is transcribed in it."""
        self.session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(detected_language=language, language_probability=probability)
            .execution_options(synchronize_session=False)
        )

    def record_download(self, job_id: str, size: int) -> None:
        """The size of a URL job's audio, known once `prepare` has downloaded it."""
        self.session.execute(update(Job).where(Job.id == job_id).values(size_bytes=size))

    def increment_completed(self, job_id: str) -> None:
        """Atomic in SQL, so concurrent chunk workers never lose an increment."""
        self.session.execute(
            update(Job).where(Job.id == job_id).values(chunks_completed=Job.chunks_completed + 1)
        )

    def complete(self, job: Job, *, text: str, detected_language: str | None) -> bool:
        """Complete a job still in the pipeline, and queue its webhook. True if this call did it."""
        return self._finish(
            job,
            status=JobStatus.COMPLETED,
            transcript_text=text,
            detected_language=detected_language,
            completed_at=utcnow(),
            error=None,
        )

    def fail(self, job: Job, error: str) -> bool:
        """Fail a job still in the pipeline, and queue its webhook. True if this call did it."""
        return self._finish(job, status=JobStatus.FAILED, error=error, completed_at=utcnow())

    def _finish(self, job: Job, **values: Any) -> bool:
        """Of two concurrent merges exactly one finishes the job; the webhook event is written by
        that one, in the same transaction (an outbox)."""
        if not self._move(job, ACTIVE, **values):
            return False
        record_job_event(self.session, job)
        return True

    def cancel(self, job: Job) -> bool:
        """Cancel a job still in the pipeline. True if this call did it: a job that a merge finished
        meanwhile keeps its status (and the webhook already written for it)."""
        return self._move(job, ACTIVE, status=JobStatus.CANCELED, completed_at=utcnow())

    def reopen(self, job: Job, *, planned: bool) -> bool:
        """A failed job back in the pipeline: processing if it has a chunk plan, else pending. True if
        this call did it: of two concurrent retries, one reopens the job and the other finds it open."""
        return self._move(
            job,
            (JobStatus.FAILED,),
            status=JobStatus.PROCESSING if planned else JobStatus.PENDING,
            error=None,
            completed_at=None,
        )

    def _move(self, job: Job, allowed: Sequence[JobStatus], **values: Any) -> bool:
        """Write `values` if the job's status is still one of `allowed`. True if this call wrote them.

        The status check is in the UPDATE itself: a concurrent writer that changed the status after
        `job` was read makes this match nothing, instead of being overwritten."""
        result = self.session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status.in_(allowed))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        for name, value in values.items():
            set_committed_value(job, name, value)
        return True

    def status_of(self, job_id: str) -> JobStatus | None:
        """The job's status as committed now (None if it is gone), whatever this session loaded."""
        return self.session.execute(select(Job.status).where(Job.id == job_id)).scalar_one_or_none()

    def existing_ids(self, job_ids: Sequence[str]) -> set[str]:
        """Those of `job_ids` that have a row."""
        stmt = select(Job.id).where(Job.id.in_(job_ids))
        return set(self.session.execute(stmt).scalars()) if job_ids else set()

    def delete_older_than(self, days: int) -> list[str]:
        """Delete finished jobs created more than `days` ago (chunks go by cascade); returns their ids.

        One statement that checks the status of each row it deletes: a job retried meanwhile is
        active again and stays."""
        cutoff = utcnow() - timedelta(days=days)
        result = self.session.execute(
            delete(Job)
            .where(Job.created_at < cutoff, Job.status.not_in(ACTIVE))
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return list(result.scalars())
