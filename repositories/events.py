"""What a job's event stream reads on each poll: its status and the chunks transcribed since."""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.enums import ChunkStatus, JobStatus
from repositories.models import Chunk, Job

# Chunk rows one poll reads at most: a stream far behind catches up over a few polls.
CHUNKS_PER_POLL = 200


@dataclass(frozen=True)
class ChunkText:
    index: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class JobSnapshot:
    status: JobStatus
    chunks_total: int | None
    chunks_completed: int
    error: str | None
    # The transcribed chunks from the index asked for on, up to the first one not transcribed.
    chunks: Sequence[ChunkText]
    # False when more transcribed chunks follow `chunks` than one poll reads.
    caught_up: bool = True


class EventsRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def snapshot(self, job_id: str, first_chunk: int) -> JobSnapshot | None:
        """The job as committed now, and its chunks `first_chunk`, `first_chunk + 1`, ... as far as
        every one is transcribed; None if the job is gone.

        The job is read before its chunks: a job read as finished had every chunk it will ever
        have written before (the merge and a cancel both write the job last), so the chunks read
        next are all of them."""
        row = self.session.execute(
            select(Job.status, Job.chunks_total, Job.chunks_completed, Job.error).where(Job.id == job_id)
        ).one_or_none()
        if row is None:
            return None
        status, total, completed, error = row
        chunks = self._contiguous(job_id, first_chunk)
        caught_up = len(chunks) <= CHUNKS_PER_POLL
        return JobSnapshot(status, total, completed, error, chunks[:CHUNKS_PER_POLL], caught_up)

    def _contiguous(self, job_id: str, first: int) -> list[ChunkText]:
        """Up to `CHUNKS_PER_POLL + 1` of them: one more tells that the poll did not catch up."""
        stmt = (
            select(Chunk.chunk_index, Chunk.start_seconds, Chunk.end_seconds, Chunk.text)
            .where(
                Chunk.job_id == job_id,
                Chunk.chunk_index >= first,
                Chunk.status == ChunkStatus.COMPLETED,
            )
            .order_by(Chunk.chunk_index)
            .limit(CHUNKS_PER_POLL + 1)
        )
        found: list[ChunkText] = []
        for index, start, end, text in self.session.execute(stmt).all():
            if index != first + len(found):
                break  # a gap: chunk `first + len(found)` is not transcribed yet
            found.append(ChunkText(index, start, end, text or ""))
        return found
