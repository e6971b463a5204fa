from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.enums import ChunkStatus
from repositories.base import Repository
from repositories.models import Chunk, new_id, utcnow

# A chunk in one of these states is never written again (a late or duplicate run is discarded).
CLOSED = (ChunkStatus.COMPLETED, ChunkStatus.CANCELED)
# A chunk in one of these states still has to be transcribed.
UNFINISHED = (ChunkStatus.PENDING, ChunkStatus.PROCESSING)
# A chunk in one of these states is transcribed again when its failed job is retried.
REDOABLE = (ChunkStatus.FAILED, ChunkStatus.CANCELED)


class ChunkRepository(Repository[Chunk]):
    model = Chunk

    def list_for_job(self, job_id: str) -> Sequence[Chunk]:
        stmt = select(Chunk).where(Chunk.job_id == job_id).order_by(Chunk.chunk_index)
        return self.session.execute(stmt).scalars().all()

    def get_by_index(self, job_id: str, index: int) -> Chunk | None:
        return self.get_one_or_none(select(Chunk).where(Chunk.job_id == job_id, Chunk.chunk_index == index))

    def add_plan(self, job_id: str, plan: list[dict[str, Any]]) -> None:
        self.session.add_all(Chunk(job_id=job_id, **values) for values in plan)
        self.session.flush()

    def add_once(self, job_id: str, index: int, **values: Any) -> None:
        """Record a planned chunk unless it is recorded already (a `prepare` that runs again cuts the
        same chunks; the unique index on (job, index) keeps one)."""
        dialect = self.session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        self.session.execute(
            insert(Chunk)
            .values(
                id=new_id(),
                job_id=job_id,
                chunk_index=index,
                status=ChunkStatus.PENDING,
                attempts=0,
                **values,
            )
            .on_conflict_do_nothing(index_elements=["job_id", "chunk_index"])
        )

    def unfinished_indexes(self, job_ids: list[str]) -> dict[str, list[int]]:
        """Chunks still to be transcribed (pending or processing), by job."""
        stmt = (
            select(Chunk.job_id, Chunk.chunk_index)
            .where(Chunk.job_id.in_(job_ids), Chunk.status.in_(UNFINISHED))
            .order_by(Chunk.job_id, Chunk.chunk_index)
        )
        found: dict[str, list[int]] = {job_id: [] for job_id in job_ids}
        for job_id, index in self.session.execute(stmt).all():
            found[job_id].append(index)
        return found

    def mark_started(self, chunk: Chunk) -> None:
        self.update(
            chunk,
            status=ChunkStatus.PROCESSING,
            attempts=chunk.attempts + 1,
            started_at=utcnow(),
            error=None,
        )

    def complete_once(
        self,
        job_id: str,
        index: int,
        *,
        text: str,
        segments: list[dict[str, Any]],
        language: str | None,
        seconds: float,
        voices: list[list[Any]] | None = None,
    ) -> bool:
        """Store a chunk's result unless one is already stored. True if this call stored it.
        `voices`: a dialogue chunk's voice prints (`Chunk.voices`).

        The status check is in the UPDATE itself, so of two concurrent runs of the same chunk exactly
        one wins (the loser's UPDATE waits on the row lock, then matches nothing).
        """
        result = self.session.execute(
            update(Chunk)
            .where(
                Chunk.job_id == job_id,
                Chunk.chunk_index == index,
                Chunk.status.not_in(CLOSED),
            )
            .values(
                status=ChunkStatus.COMPLETED,
                text=text,
                segments=segments,
                language=language,
                transcribe_seconds=seconds,
                voices=voices,
                completed_at=utcnow(),
                error=None,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def remember_transcript(self, job_id: str, index: int, transcript_id: str) -> None:
        """Store the provider's transcript id of a chunk whose result is not stored yet."""
        self.session.execute(
            update(Chunk)
            .where(Chunk.job_id == job_id, Chunk.chunk_index == index, Chunk.status.not_in(CLOSED))
            .values(provider_transcript_id=transcript_id)
            .execution_options(synchronize_session=False)
        )

    def fail(self, chunk: Chunk, error: str) -> None:
        self.update(chunk, status=ChunkStatus.FAILED, error=error)

    def cancel_open(self, job_id: str) -> list[int]:
        """Cancel the job's chunks not yet closed. Returns the indexes of those this call canceled."""
        return self._move_all(job_id, Chunk.status.not_in(CLOSED), status=ChunkStatus.CANCELED)

    def reopen_failed(self, job_id: str) -> list[int]:
        """Failed or canceled chunks back to pending, for a retry. Returns the indexes of those this
        call reopened: a concurrent retry that reopened them first leaves none to this one."""
        return self._move_all(job_id, Chunk.status.in_(REDOABLE), status=ChunkStatus.PENDING, error=None)

    def _move_all(self, job_id: str, condition: ColumnElement[bool], **values: Any) -> list[int]:
        """One conditional UPDATE of the job's chunks that meet `condition`; the indexes it changed."""
        result = self.session.execute(
            update(Chunk)
            .where(Chunk.job_id == job_id, condition)
            .values(**values)
            .returning(Chunk.chunk_index)
        )
        return sorted(result.scalars())
