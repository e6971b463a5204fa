"""Response and request bodies."""

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictBool, StrictInt

from api.fields import Text
from core.enums import Backend, ChunkStatus, JobStatus, Mode, Priority, Tier
from core.options import Task, Timestamps, TranscriptionOptions
from repositories.models import Chunk, Job, User, WebhookEvent, WebhookStatus
from storage.base import UploadForm

if TYPE_CHECKING:
    from api.job_stats import Stats
    from api.queue_estimates import Estimate
    from api.quota import Usage


class ErrorOut(BaseModel):
    error: str
    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: these status codes answer with an ErrorOut body."""
    return {code: {"model": ErrorOut} for code in codes}


class Progress(BaseModel):
    chunks_total: int | None
    chunks_completed: int
    percent: float


class OptionsOut(BaseModel):
    """A job's transcription options, each with its effective value (null: the file's own start or
    end; no speaker count: found from the audio)."""

    model: str | None = Field(description="the model the job runs with (null: a job older than models)")
    task: Task
    prompt: str | None
    hotwords: str | None
    timestamps: Timestamps
    start: float | None = Field(description="seconds into the file the job transcribes from")
    end: float | None = Field(description="seconds into the file the job transcribes to")
    speakers: int | None
    min_speakers: int | None
    max_speakers: int | None

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> "OptionsOut":
        return cls(**TranscriptionOptions.of(stored).shown())


class JobOut(BaseModel):
    id: str
    status: JobStatus
    priority: Priority
    language: str | None = Field(description="the requested language, or the detected one once known")
    language_probability: float | None = Field(
        description="how sure the model was of the detected language (0 to 1); null when requested"
    )
    backend: Backend | None = Field(description="the backend asked for; null: the service's default")
    mode: Mode
    options: OptionsOut
    filename: str
    audio_url: str | None = Field(description="where the audio is fetched from, for a job submitted by URL")
    webhook_url: str | None
    size_bytes: int = Field(description="0 until the audio of a URL job is fetched")
    audio_duration_seconds: float | None = Field(
        description="seconds of audio the job transcribes and is billed for (of `start`..`end` only)"
    )
    progress: Progress
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    queue_position: int | None = Field(
        default=None,
        description="while pending or processing (`GET /v1/jobs/{id}`): chunks of other jobs the "
        "fleet transcribes before this one is done (0: its own are next or running); else null",
    )
    eta_seconds: float | None = Field(
        default=None,
        description="while pending or processing (`GET /v1/jobs/{id}`): seconds until the job "
        "should be done, from the fleet's measured pace; else null",
    )

    @classmethod
    def of(cls, job: Job, standing: "Estimate | None" = None) -> "JobOut":
        """`standing`: the job's place in the queue, where the caller worked it out."""
        total, done = job.chunks_total, job.chunks_completed
        return cls(
            id=job.id,
            status=job.status,
            priority=job.priority,
            language=job.language or job.detected_language,
            language_probability=job.language_probability,
            backend=job.backend,
            mode=job.mode,
            options=OptionsOut.of(job.options),
            filename=job.filename,
            audio_url=job.source_url,
            webhook_url=job.webhook_url,
            size_bytes=job.size_bytes,
            audio_duration_seconds=job.audio_duration_seconds,
            progress=Progress(
                chunks_total=total,
                chunks_completed=done,
                percent=100.0
                if job.status == JobStatus.COMPLETED
                else round(100 * done / total, 1)
                if total
                else 0.0,
            ),
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            queue_position=None if standing is None else standing.position,
            eta_seconds=None if standing is None else standing.eta_seconds,
        )


class ModelOut(BaseModel):
    """One model jobs may name, in OpenAI's shape, with what it can do."""

    id: str = Field(description="the name to give as `model`")
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "verbatim"
    multilingual: bool = Field(description="detects languages and translates; false: English only")
    default: bool = Field(description="the model of a job that names none")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class LanguageOut(BaseModel):
    code: str = Field(description="what `language` takes")
    name: str = Field(description="its English name")


class LanguageList(BaseModel):
    data: list[LanguageOut]


class JobList(BaseModel):
    items: list[JobOut]
    total: int = Field(
        description="matches before paging; when `total_exact` is false, a lower bound (at least "
        "1,000 past `offset`): page on while `offset + limit < total`, or ask `exact_total=true`"
    )
    total_exact: bool = True
    limit: int
    offset: int


class JobStats(BaseModel):
    by_status: dict[JobStatus, int]
    total_jobs: int
    audio_minutes: float = Field(description="audio minutes of completed jobs")
    average_processing_seconds: float | None = Field(description="from start of processing to completion")
    success_rate: float | None = Field(description="completed / (completed + failed); null before any")

    @classmethod
    def of(cls, stats: "Stats") -> "JobStats":
        return cls(
            by_status={status: stats.by_status.get(status, 0) for status in JobStatus},
            total_jobs=sum(stats.by_status.values()),
            audio_minutes=round(stats.audio_seconds / 60, 2),
            average_processing_seconds=(
                None
                if stats.average_processing_seconds is None
                else round(stats.average_processing_seconds, 2)
            ),
            success_rate=None if stats.success_rate is None else round(stats.success_rate, 4),
        )


class TierLimits(BaseModel):
    max_priority: Priority
    backends: list[Backend] = Field(description="backends a job may choose with `backend`")
    max_upload_mb: int
    max_duration_minutes: int
    max_active_jobs: int
    monthly_minutes: int


class UsageOut(BaseModel):
    month: str = Field(description="the calendar month (UTC) the figures are for, e.g. 2026-11")
    tier: Tier
    minutes_used: float
    minutes_left: float
    active_jobs: int
    limits: TierLimits

    @classmethod
    def of(cls, usage: "Usage", tier: Tier) -> "UsageOut":
        return cls(
            month=usage.month,
            tier=tier,
            minutes_used=round(usage.seconds_used / 60, 2),
            minutes_left=round(usage.seconds_left / 60, 2),
            active_jobs=usage.active_jobs,
            limits=TierLimits(**asdict(usage.policy)),
        )


class PurgeOut(BaseModel):
    deleted: int


# --- job events (`GET /v1/jobs/{id}/events`): the `data` of each server-sent event -------------------


class StatusEventData(BaseModel):
    """`event: status`: first, then on each change of the status or of `chunks_total`; a final
    status is the stream's last event."""

    status: JobStatus
    chunks_total: int | None
    chunks_completed: int
    error: str | None


class ChunkEventData(BaseModel):
    """`event: chunk`: a transcribed chunk, in index order (seconds on the file's timeline)."""

    index: int
    start: float
    end: float
    text: str


class QueueEventData(BaseModel):
    """`event: queue`: while the job is pending or processing, when either value changes."""

    queue_position: int = Field(description="as `queue_position` of `GET /v1/jobs/{id}`")
    eta_seconds: float = Field(description="as `eta_seconds` of `GET /v1/jobs/{id}`")


class ChunkOut(BaseModel):
    index: int
    start: float
    end: float
    speech_seconds: float = Field(description="seconds of audio the chunk gives the model (its spans)")
    status: ChunkStatus
    text: str | None
    error: str | None

    @classmethod
    def of(cls, chunk: Chunk) -> "ChunkOut":
        return cls(
            index=chunk.chunk_index,
            start=chunk.start_seconds,
            end=chunk.end_seconds,
            speech_seconds=chunk.speech_seconds,
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


class QueueHealthOut(BaseModel):
    name: str
    queued: int
    started: int
    workers: int
    oldest_queued_seconds: float | None = Field(description="how long the oldest waiting task has waited")


class EngineOut(BaseModel):
    """What one worker transcribes with."""

    worker: str
    backend: str
    batch_size: int
    model: str | None = None
    device: str | None = Field(default=None, description="`cpu` or `cuda`")
    device_index: list[int] | None = None
    compute_type: str | None = None
    threads: int | None = None


class HealthOut(BaseModel):
    status: str
    checked_at: datetime = Field(
        description="when these figures were read: at most once a second per API process, so they "
        "may be up to a second old"
    )
    database: str
    redis: str
    storage: str
    workers: int | None
    jobs_count: int | None = Field(
        description="jobs in SQL: exact up to 10,000, past that PostgreSQL's estimate"
    )
    queues: list[QueueHealthOut]
    engines: list[EngineOut] = Field(
        default_factory=list, description="per worker: device, model, batch size"
    )


class ReadyOut(BaseModel):
    status: str = Field(description="`ready`, or `not_ready` with a `503`")
    database: str
    redis: str
    storage: str


class LiveOut(BaseModel):
    status: str


class UserCreate(BaseModel):
    email: EmailStr
    tier: Tier = Tier.FREE


class UserCreated(BaseModel):
    id: str
    email: str
    tier: Tier
    api_key: str = Field(description="shown once; only a hash is stored")


# --- accounts ------------------------------------------------------------------------------------

MIN_PASSWORD_LENGTH = 10
# argon2 pre-hashes any length, but an unbounded field is still an easy way to waste CPU.
MAX_PASSWORD_LENGTH = 1024
Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]


class RegisterIn(BaseModel):
    email: EmailStr
    password: Password


class LoginForm(BaseModel):
    """The OAuth2 password flow's form; its other fields (`grant_type`, `scope`) are not used."""

    username: Text = Field(description="your email")
    password: str = Field(max_length=MAX_PASSWORD_LENGTH, json_schema_extra={"format": "password"})


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    new_password: Password


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int = Field(description="seconds until the token expires")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    tier: Tier
    is_admin: bool
    created_at: datetime


class WebSessionIn(BaseModel):
    email: Text = Field(max_length=320)
    password: str = Field(max_length=MAX_PASSWORD_LENGTH, json_schema_extra={"format": "password"})


class WebSessionOut(BaseModel):
    user: UserOut
    csrf_token: str = Field(description="send it back as the `X-CSRF-Token` header of every write")
    expires_in: int = Field(description="seconds until the session ends unless renewed (GET)")


class RegistrationOut(BaseModel):
    """The same answer whether the email was new or already had an account: registration does not
    tell which emails are registered. A new email's account exists now; a registered one's is
    unchanged (its password still the old one)."""

    email: str
    detail: str = "registration received: log in with this email and password (POST /v1/auth/login)"


class AdminUserOut(UserOut):
    is_active: bool
    has_password: bool

    @classmethod
    def of(cls, user: User) -> "AdminUserOut":
        return cls(
            id=user.id,
            email=user.email,
            tier=user.tier,
            is_admin=user.is_admin,
            created_at=user.created_at,
            is_active=user.is_active,
            has_password=user.password_hash is not None,
        )


class UserList(BaseModel):
    items: list[AdminUserOut]
    total: int
    limit: int
    offset: int


class UserPatch(BaseModel):
    """Fields left out (or null) stay as they are."""

    model_config = ConfigDict(extra="forbid")

    tier: Tier | None = None
    is_active: StrictBool | None = None  # JSON true/false, not 0/1 or "yes"


class ApiKeyCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=100, description="what the key is for, e.g. 'laptop'")


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    prefix: str = Field(description="the public part of the key, to recognise it: `vbt_<prefix>_...`")
    created_at: datetime
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="shown once; only a hash is stored")


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=1024, description="only its extension is kept")
    size: StrictInt = Field(gt=0, description="the file's length in bytes")  # not "5" or 5.0
    content_type: str | None = Field(default=None, max_length=255)


class UploadTicket(BaseModel):
    """Where and how to send the file. `PUT` (local storage): the file is the whole request body,
    sent with `headers`. `POST` (S3): a form upload, `multipart/form-data` with each of `fields`
    and then the file as the last part, named `file`. Either way a body longer than the `size`
    asked for is refused."""

    upload_url: str = Field(description="send the file here, with `method`")
    object_key: str = Field(description="pass to `POST /v1/jobs` as `object_key` once uploaded")
    expires_at: datetime
    method: Literal["PUT", "POST"] = "PUT"
    headers: dict[str, str] = Field(description="headers to send with the upload")
    fields: dict[str, str] = Field(
        default_factory=dict, description="`POST` only: the form fields to send before the file"
    )

    @classmethod
    def of(cls, object_key: str, form: UploadForm) -> "UploadTicket":
        return cls(
            upload_url=form.url,
            object_key=object_key,
            expires_at=form.expires_at,
            method=form.method,
            headers=form.headers,
            fields=form.fields,
        )


class UploadReceived(BaseModel):
    object_key: str
    size: int


# --- webhooks ------------------------------------------------------------------------------------


class WebhookSecretOut(BaseModel):
    secret: str = Field(description="`whsec_...`, shown once: verify the `webhook-signature` header with it")


class WebhookEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(max_length=2048, description="where your jobs' webhooks go; null: nowhere")


class WebhookEndpointOut(BaseModel):
    url: str | None = Field(description="the default for jobs submitted without a `webhook_url`")
    has_secret: bool = Field(description="whether a signing secret exists (it is never shown again)")

    @classmethod
    def of(cls, user: User) -> "WebhookEndpointOut":
        return cls(url=user.webhook_url, has_secret=user.webhook_secret is not None)


class WebhookAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    started_at: datetime
    status_code: int | None = Field(description="the endpoint's answer; null if it gave none")
    error: str | None = Field(description="why the attempt did not deliver, when the status does not say")
    duration_ms: int


class WebhookEventOut(BaseModel):
    id: str = Field(description="the `webhook-id` header, the same on every attempt")
    type: str = Field(description="`job.completed` or `job.failed`")
    url: str
    status: WebhookStatus
    next_attempt_at: datetime | None = Field(description="set while the event is pending")
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[WebhookAttemptOut]

    @classmethod
    def of(cls, event: WebhookEvent) -> "WebhookEventOut":
        return cls(
            id=event.id,
            type=event.type,
            url=event.url,
            status=event.status,
            next_attempt_at=event.next_attempt_at,
            created_at=event.created_at,
            delivered_at=event.delivered_at,
            attempts=[WebhookAttemptOut.model_validate(a) for a in event.attempt_log],
        )
