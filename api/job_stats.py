"""Figures over jobs, one user's or everyone's: counts by status, audio transcribed, speed."""

from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.enums import JobStatus
from repositories.jobs import JobRepository


@dataclass(frozen=True)
class Stats:
    by_status: dict[JobStatus, int]
    audio_seconds: float
    average_processing_seconds: float | None

    @property
    def success_rate(self) -> float | None:
        """Completed over finished (completed + failed); canceled jobs are the user's choice."""
        completed, failed = (
            self.by_status.get(JobStatus.COMPLETED, 0),
            self.by_status.get(JobStatus.FAILED, 0),
        )
        return completed / (completed + failed) if completed + failed else None


def job_stats(session: Session, user_id: str | None) -> Stats:
    jobs = JobRepository(session)
    audio, average = jobs.completed_figures(user_id)
    return Stats(
        by_status=jobs.count_by_status(user_id), audio_seconds=audio, average_processing_seconds=average
    )
