"""Response and request bodies."""

from datetime import datetime

from pydantic import BaseModel, EmailStr, Field

from core.enums import ChunkStatus, JobStatus, Priority, Tier
from repositories.models import Chunk, Job


class ErrorOut(BaseModel):
    error: str
    detail: str


class Progress(BaseModel):
    chunks_total: int | None
    chunks_completed: int
    percent: float


class JobOut(BaseModel):
    id: str
    status: JobStatus
    priority: Priority
    language: str | None = Field(description="the requested language, or the detected one once known")
    filename: str
    size_bytes: int
    audio_duration_seconds: float | None
    progress: Progress
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> "JobOut":
        total, done = job.chunks_total, job.chunks_completed
        return cls(
            id=job.id,
            status=job.status,
            priority=job.priority,
            language=job.language or job.detected_language,
            filename=job.filename,
            size_bytes=job.size_bytes,
            audio_duration_seconds=job.audio_duration_seconds,
            progress=Progress(
                chunks_total=total,
                chunks_completed=done,
                percent=round(100 * done / total, 1) if total else 0.0,
            ),
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
        )


class JobList(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class ChunkOut(BaseModel):
    index: int
    start: float
    end: float
    status: ChunkStatus
    text: str | None
    error: str | None

    @classmethod
    def of(cls, chunk: Chunk) -> "ChunkOut":
        return cls(
            index=chunk.chunk_index,
            start=chunk.start_seconds,
            end=chunk.end_seconds,
            status=chunk.status,
            text=chunk.text,
            error=chunk.error,
        )


class QueueOut(BaseModel):
    name: str
    priority: Priority
    queued: int
    started: int
    failed: int
    workers: int


class HealthOut(BaseModel):
    status: str
    database: str
    redis: str
    workers: int | None
    jobs_count: int | None


class UserCreate(BaseModel):
    email: EmailStr
    tier: Tier = Tier.FREE


class UserCreated(BaseModel):
    id: str
    email: str
    tier: Tier
    api_key: str = Field(description="shown once; only a hash is stored")
