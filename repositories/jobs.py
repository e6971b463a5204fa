from collections.abc import Sequence

from sqlalchemy import func, select, update

from core.enums import JobStatus
from repositories.base import Repository
from repositories.models import Job, utcnow


class JobRepository(Repository[Job]):
    model = Job

    def get_for_owner(self, job_id: str, user_id: str) -> Job | None:
        return self.get_one_or_none(select(Job).where(Job.id == job_id, Job.user_id == user_id))

    def list_for_owner(self, user_id: str, limit: int, offset: int) -> tuple[Sequence[Job], int]:
        stmt = select(Job).where(Job.user_id == user_id).order_by(Job.created_at.desc(), Job.id.desc())
        return self.paginate(stmt, limit, offset)

    def count_by_status(self) -> dict[JobStatus, int]:
        rows = self.session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        return {status: int(count) for status, count in rows}

    def claim_plan(self, job_id: str, *, duration: float, chunks_total: int) -> bool:
        """Record a job's chunk plan unless one is recorded already. True if this call recorded it.

        A conditional UPDATE, so that of two concurrent `prepare` runs exactly one plan is kept.
        """
        result = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.chunks_total.is_(None))
            .values(
                status=JobStatus.PROCESSING,
                audio_duration_seconds=duration,
                chunks_total=chunks_total,
                chunks_completed=0,
                started_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def increment_completed(self, job_id: str) -> None:
        """Atomic in SQL, so concurrent chunk workers never lose an increment."""
        self.session.execute(
            update(Job).where(Job.id == job_id).values(chunks_completed=Job.chunks_completed + 1)
        )

    def complete(self, job: Job, *, text: str, detected_language: str | None) -> None:
        self.update(
            job,
            status=JobStatus.COMPLETED,
            transcript_text=text,
            detected_language=detected_language,
            completed_at=utcnow(),
            error=None,
        )

    def fail(self, job: Job, error: str) -> None:
        self.update(job, status=JobStatus.FAILED, error=error, completed_at=utcnow())
