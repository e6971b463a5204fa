"""The admin's purge of finished jobs (the worker applies the same rule on its schedule, through
`JobRepository.delete_older_than`, where the cutoff lives)."""

from sqlalchemy.orm import Session

from repositories.jobs import JobRepository


def purge_old_jobs(session: Session, older_than_days: int) -> list[str]:
    """Delete finished jobs older than `older_than_days`; the caller removes their files after commit."""
    return JobRepository(session).delete_older_than(older_than_days)
