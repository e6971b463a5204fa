"""What `POST /v1/jobs` accepts besides the audio: the job's options, and the two sources that are
not a multipart file (an object uploaded with `POST /v1/uploads`, or a URL the worker downloads).

Options come as multipart form fields or as JSON members with the same names, and are checked the
same way: against the caller's tier and against what this service can run.
"""

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.fields import Text
from core.config import Settings
from core.enums import Backend, Mode, Priority
from core.errors import Invalid
from core.languages import LANGUAGES
from core.netguard import UnsafeUrl, check_url
from core.tiers import resolve_backend, resolve_priority
from repositories.models import User

E = TypeVar("E", Backend, Mode, Priority)

# Backends that can tell speakers apart (`mode=dialogue`).
SPEAKER_LABELS = frozenset({Backend.ASSEMBLYAI})


class JobCreate(BaseModel):
    """The JSON body of `POST /v1/jobs`: exactly one of `object_key` and `audio_url`."""

    model_config = ConfigDict(extra="forbid")

    # min_length: an empty string is no source, not a second way to leave one out.
    object_key: Text | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="the `object_key` `POST /v1/uploads` returned, once uploaded",
    )
    audio_url: Text | None = Field(
        None,
        min_length=1,
        max_length=2048,
        description="an http(s) URL of the audio; the worker downloads it",
    )
    filename: str | None = Field(
        None, max_length=255, description="shown in the job; default from the key or URL"
    )
    language: str | None = Field(None, max_length=16)
    priority: str | None = Field(None, max_length=16)
    backend: str | None = Field(None, max_length=32)
    mode: str | None = Field(None, max_length=16)
    webhook_url: Text | None = Field(None, max_length=2048)

    @model_validator(mode="after")
    def _one_source(self) -> "JobCreate":
        if (self.object_key is None) == (self.audio_url is None):
            raise ValueError("give exactly one of `object_key` and `audio_url`")
        return self

    def option_fields(self) -> dict[str, str | None]:
        return {
            "language": self.language,
            "priority": self.priority,
            "backend": self.backend,
            "mode": self.mode,
            "webhook_url": self.webhook_url,
        }


@dataclass(frozen=True)
class JobOptions:
    priority: Priority
    language: str | None
    backend: Backend | None
    mode: Mode
    webhook_url: str | None


def parse_options(fields: dict[str, str | None], user: User, settings: Settings) -> JobOptions:
    """Form fields or JSON members → checked options (422 or 403 with the reason)."""
    backend = resolve_backend(user.tier, _choice(Backend, "backend", fields.get("backend")))
    mode = _choice(Mode, "mode", fields.get("mode")) or Mode.MONO
    effective = backend or Backend(settings.transcription_backend)
    if mode == Mode.DIALOGUE and effective not in SPEAKER_LABELS:
        raise Invalid(
            f"mode 'dialogue' needs a backend that labels speakers (assemblyai); this job would run "
            f"on '{effective.value}'"
        )
    if effective == Backend.ASSEMBLYAI and settings.assemblyai_api_key is None:
        raise Invalid("the assemblyai backend is not configured on this service")
    return JobOptions(
        priority=resolve_priority(user.tier, _choice(Priority, "priority", fields.get("priority"))),
        language=_language(fields.get("language")),
        backend=backend,
        mode=mode,
        webhook_url=checked_url("webhook_url", fields.get("webhook_url"), settings),
    )


def _choice(enum: type[E], name: str, raw: str | None) -> E | None:
    if not raw:
        return None
    try:
        return enum(raw.lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise Invalid(f"unknown {name} '{raw}': use {allowed}") from None


def _language(raw: str | None) -> str | None:
    if not raw or raw.lower() == "auto":
        return None
    if raw.lower() not in LANGUAGES:
        raise Invalid(f"unknown language '{raw}': use a code such as 'en', or omit it to detect")
    return raw.lower()


def checked_url(name: str, url: str | None, settings: Settings) -> str | None:
    """A URL the service will call or fetch, refused unless it is safe to reach (see core.netguard)."""
    if not url:
        return None
    try:
        check_url(url, allow_private=settings.webhook_allow_private)
    except UnsafeUrl as exc:
        raise Invalid(f"{name} refused: {exc}") from None
    return url


def filename_from_url(url: str) -> str:
    """What a URL job is called when the client gives no filename: the last part of its path."""
    return PurePosixPath(unquote(urlsplit(url).path)).name or "audio"
