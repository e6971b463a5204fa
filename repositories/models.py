"""SQLAlchemy models. SQL is the source of truth for every job; Redis only holds work to do."""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import text as sql_text
from sqlalchemy.sql.expression import true

from core.enums import Backend, ChunkStatus, JobStatus, Mode, Priority, Tier


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _enum(cls: Any) -> Enum:
    # Stored as plain strings so adding a value never needs an ALTER TYPE.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda e: [m.value for m in e],
    )


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    tier: Mapped[Tier] = mapped_column(_enum(Tier))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Bumped on a password change: tokens carry it, so every older token stops working.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Where webhooks go for jobs submitted without their own `webhook_url`.
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    # In plaintext, unlike passwords and API keys: signing needs the key itself, and an HMAC cannot
    # be checked against a hash. Never logged; returned only once, by POST /v1/webhooks/secret.
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="raise")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The owner's history, newest or oldest first, ties by id: a page is a walk of this index.
        Index("ix_jobs_user_id_created_at", "user_id", "created_at", "id"),
        # The history search (`?q=`: a substring of the filename or the transcript, any case) on
        # PostgreSQL: trigram indexes serve ILIKE '%…%'. SQLite, the embedded default, scans.
        *(
            Index(
                f"ix_jobs_{column}_trgm",
                column,
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
                info={"dialect": "postgresql"},
            ).ddl_if(dialect="postgresql")
            for column in ("filename", "transcript_text")
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.PENDING, index=True)
    priority: Mapped[Priority] = mapped_column(_enum(Priority))
    language: Mapped[str | None] = mapped_column(String(16))
    detected_language: Mapped[str | None] = mapped_column(String(16))
    # How sure the model was of `detected_language` (0 to 1), from the job's first speech.
    language_probability: Mapped[float | None] = mapped_column(Float)
    # The transcription options that differ from the defaults (`core.options.TranscriptionOptions`).
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    source_key: Mapped[str] = mapped_column(String(512))
    # Set for a job submitted by URL: `prepare` downloads it to `source_key` first.
    source_url: Mapped[str | None] = mapped_column(String(2048))
    # None: the fleet's default backend (VERBATIM_TRANSCRIPTION_BACKEND) at the time it runs.
    backend: Mapped[Backend | None] = mapped_column(_enum(Backend))
    mode: Mapped[Mode] = mapped_column(_enum(Mode), default=Mode.MONO, server_default=Mode.MONO.value)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    audio_duration_seconds: Mapped[float | None] = mapped_column(Float)
    chunks_total: Mapped[int | None] = mapped_column(Integer)
    chunks_completed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    transcript_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Indexed for the metrics' trailing windows.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    chunks: Mapped[list["Chunk"]] = relationship(
        lazy="raise", order_by="Chunk.chunk_index", passive_deletes=True
    )


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("job_id", "chunk_index", name="uq_chunks_job_id_chunk_index"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    audio_key: Mapped[str] = mapped_column(String(512))
    # [[start, end], ...] seconds on the job's timeline: the stretches of speech the chunk's audio
    # holds, back to back. None for a chunk that is one contiguous stretch [start, end].
    spans: Mapped[list[list[float]] | None] = mapped_column(JSON)
    status: Mapped[ChunkStatus] = mapped_column(_enum(ChunkStatus), default=ChunkStatus.PENDING)
    text: Mapped[str | None] = mapped_column(Text)
    segments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    language: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    transcribe_seconds: Mapped[float | None] = mapped_column(Float)
    # The provider's id for this chunk's transcript (AssemblyAI): a retry polls it again instead
    # of uploading and paying for the chunk a second time.
    provider_transcript_id: Mapped[str | None] = mapped_column(String(100))
    # Dialogue mode: voice prints of the chunk's speech, [[start, end, [floats...]], ...] on the
    # job's timeline, clustered across the whole job at the merge (`worker.speakers`).
    voices: Mapped[list[list[Any]] | None] = mapped_column(JSON)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    @property
    def speech_spans(self) -> list[list[float]]:
        """The stretches of the timeline the chunk's audio holds, back to back."""
        return self.spans or [[self.start_seconds, self.end_seconds]]

    @property
    def speech_seconds(self) -> float:
        return round(sum(end - start for start, end in self.speech_spans), 3)


class WebhookStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retried for `VERBATIM_WEBHOOK_RETRY_HOURS`, never accepted
    DISABLED = "disabled"  # the endpoint answered 410 Gone


class WebhookEvent(Base):
    """The webhook outbox: written in the transaction that finishes the job, sent by the fleet.

    `payload` is the body without its `links`, which the sender adds from its public URL.
    Deleting the job deletes its events (and their attempts).
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        # A job completes once: a second `job.completed` would be a bug, so the database refuses it.
        # (`job.failed` may repeat: a failed job can be retried and fail again.)
        Index(
            "uq_webhook_events_job_id_completed",
            "job_id",
            unique=True,
            sqlite_where=sql_text("type = 'job.completed'"),
            postgresql_where=sql_text("type = 'job.completed'"),
        ),
    )

    # The `webhook-id` header: the same on every attempt, so receivers can drop duplicates.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[WebhookStatus] = mapped_column(_enum(WebhookStatus), default=WebhookStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set only while pending, so the index holds just the events still owed.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # A sender's lease: no other sender takes the event before this time.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    attempt_log: Mapped[list["WebhookAttempt"]] = relationship(
        lazy="raise", order_by="WebhookAttempt.number", passive_deletes=True
    )


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("event_id", "number", name="uq_webhook_attempts_event_id_number"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The endpoint's answer, or why there was none (timeout, refused by the address guard, ...).
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer)


class Upload(Base):
    """A direct upload granted by `POST /v1/uploads` and not yet submitted as a job.

    `POST /v1/jobs {"object_key"}` claims (deletes) the row as it moves the object into the job;
    retention deletes rows and objects left unclaimed well past their URL's expiry.
    """

    __tablename__ = "uploads"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Reservation(Base):
    """One of a user's active-job slots, held by a submission whose audio is still on its way.

    Taken before the request's body is read and counted with the user's active jobs; the job takes
    its place in the transaction that creates the job, and a refused or failed submission deletes
    it. One left by a request that died without either stops counting at `expires_at`.
    """

    __tablename__ = "reservations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
