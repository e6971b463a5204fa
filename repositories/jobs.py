from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from core.enums import JobStatus
from repositories.base import Repository, seconds_between
from repositories.models import Job, utcnow
from repositories.webhooks import record_job_event

# Jobs whose audio minutes count towards the month's quota: finished work and work in flight.
# Failed and canceled jobs are not billed.
BILLED = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETED)
ACTIVE = (JobStatus.PENDING, JobStatus.PROCESSING)

SORTS: dict[str, Any] = {
    "created_at": Job.created_at,
    "completed_at": Job.completed_at,
    "duration": Job.audio_duration_seconds,
    "filename": Job.filename,
}


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
            conditions.append(
                or_(
                    Job.filename.icontains(self.q, autoescape=True),
                    Job.transcript_text.icontains(self.q, autoescape=True),
                )
            )
        return stmt.where(*conditions)

    def order(self, stmt: Select[Any]) -> Select[Any]:
        column = SORTS[self.sort.removeprefix("-")]
        direction = column.desc() if self.sort.startswith("-") else column.asc()
        return stmt.order_by(direction.nulls_last(), Job.id.desc())


class JobRepository(Repository[Job]):
    model = Job

    def get_for_owner(self, job_id: str, user_id: str) -> Job | None:
        return self.get_one_or_none(select(Job).where(Job.id == job_id, Job.user_id == user_id))

    def list_for_owner(
        self, user_id: str, limit: int, offset: int, filters: JobFilter | None = None
    ) -> tuple[Sequence[Job], int]:
        filters = filters or JobFilter()
        stmt = filters.order(filters.apply(select(Job).where(Job.user_id == user_id)))
        return self.paginate(stmt, limit, offset)

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
        stmt = select(func.coalesce(func.sum(Job.audio_duration_seconds), 0.0)).where(
            Job.user_id == user_id, Job.created_at >= since, Job.status.in_(BILLED)
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
        """A conditional UPDATE, so that of two concurrent merges exactly one finishes the job; the
        webhook event is written by that one, in the same transaction (an outbox)."""
        result = self.session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status.in_(ACTIVE))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        for name, value in values.items():
            set_committed_value(job, name, value)
        record_job_event(self.session, job)
        return True

    def cancel(self, job: Job) -> None:
        self.update(job, status=JobStatus.CANCELED, completed_at=utcnow())

    def reopen(self, job: Job, *, planned: bool) -> None:
        """A failed job back in the pipeline: processing if it has a chunk plan, else pending."""
        self.update(
            job,
            status=JobStatus.PROCESSING if planned else JobStatus.PENDING,
            error=None,
            completed_at=None,
        )

    def delete_older_than(self, cutoff: datetime) -> list[str]:
        """Delete finished jobs created before `cutoff` (chunks go by cascade); returns their ids."""
        stmt = select(Job.id).where(Job.created_at < cutoff, Job.status.not_in(ACTIVE))
        ids = list(self.session.execute(stmt).scalars())
        if ids:
            self.session.execute(
                delete(Job).where(Job.id.in_(ids)).execution_options(synchronize_session=False)
            )
        return ids
