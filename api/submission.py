"""What `POST /v1/jobs` accepts besides the audio: the job's options, and the two sources that are
not a multipart file (an object uploaded with `POST /v1/uploads`, or a URL the worker downloads).

Options come as multipart form fields or as JSON members with the same names, and are checked the
same way: against the caller's tier and against what this service can run.
"""

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote, urlsplit

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from api.fields import Text, storable
from core.config import Settings
from core.enums import Backend, Mode, Priority
from core.errors import Invalid
from core.languages import LANGUAGES
from core.models import is_multilingual
from core.netguard import UnsafeUrl, check_url
from core.options import (
    MAX_HOTWORDS_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SPEAKERS,
    Task,
    Timestamps,
    TranscriptionOptions,
)
from core.tiers import allowed_models, resolve_backend, resolve_model, resolve_priority
from repositories.models import User

E = TypeVar("E", Backend, Mode, Priority, Task, Timestamps)

# Text within a bound, checked in that order: a value too long is refused as such (a bound after
# the validator would count "items after validation").
ModelName = Annotated[str, StringConstraints(max_length=100), AfterValidator(storable)]
Prompt = Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS), AfterValidator(storable)]
Hotwords = Annotated[str, StringConstraints(max_length=MAX_HOTWORDS_CHARS), AfterValidator(storable)]


class JobFields(BaseModel):
    """The options of `POST /v1/jobs`, as multipart form fields or JSON members: one set of rules
    for both (a form's fields are strings, read as JSON's numbers would be). A value of the wrong
    type or out of its bounds is a 422 naming the field; `parse_options` checks the rest."""

    model_config = ConfigDict(extra="ignore")

    language: str | None = Field(None, max_length=16, description="e.g. `en`; default: detect")
    priority: str | None = Field(None, max_length=16, description="`high|normal|low`; default from your tier")
    backend: str | None = Field(None, max_length=32, description="`local|assemblyai`, where your tier allows")
    mode: str | None = Field(None, max_length=16, description="`mono|dialogue` (dialogue: label speakers)")
    webhook_url: Text | None = Field(None, max_length=2048)
    model: ModelName | None = Field(None, description="a name `GET /v1/models` lists")
    task: str | None = Field(
        None, max_length=16, description="`transcribe` (default) or `translate` (to English)"
    )
    prompt: Prompt | None = Field(None, description="text the model reads as if said before the audio")
    hotwords: Hotwords | None = Field(None, description="words to favour")
    timestamps: str | None = Field(None, max_length=16, description="`segment` (default) or `word`")
    start: float | None = Field(
        None, ge=0, allow_inf_nan=False, strict=True, description="seconds into the file to start at"
    )
    end: float | None = Field(
        None, ge=0, allow_inf_nan=False, strict=True, description="seconds into the file to stop at"
    )
    speakers: int | None = Field(
        None, ge=1, le=MAX_SPEAKERS, strict=True, description="`mode=dialogue`: how many speak"
    )
    min_speakers: int | None = Field(None, ge=1, le=MAX_SPEAKERS, strict=True)
    max_speakers: int | None = Field(None, ge=1, le=MAX_SPEAKERS, strict=True)


class JobCreate(JobFields):
    """The JSON body of `POST /v1/jobs`: exactly one of `object_key` and `audio_url`, and options."""

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

    @model_validator(mode="after")
    def _one_source(self) -> "JobCreate":
        if (self.object_key is None) == (self.audio_url is None):
            raise ValueError("give exactly one of `object_key` and `audio_url`")
        return self


def form_fields(fields: dict[str, str]) -> JobFields:
    """A multipart form's option fields (an empty field is one left out), checked as JSON's are."""
    try:
        return JobFields.model_validate_strings(
            {name: value for name, value in fields.items() if value and name in JobFields.model_fields}
        )
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def form_schema() -> dict[str, Any]:
    """The options as multipart fields in OpenAPI: JobFields' schema, each field without its
    `null` (a form leaves a field out instead)."""
    return {name: _not_null(field) for name, field in JobFields.model_json_schema()["properties"].items()}


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    kept = [branch for branch in field.get("anyOf", [field]) if branch.get("type") != "null"]
    rest = {k: v for k, v in field.items() if k not in ("anyOf", "default", "title")}
    return {**kept[0], **rest}


@dataclass(frozen=True)
class JobOptions:
    priority: Priority
    language: str | None
    backend: Backend | None
    mode: Mode
    webhook_url: str | None
    transcription: TranscriptionOptions


def parse_options(fields: JobFields, user: User, settings: Settings) -> JobOptions:
    """Form fields or JSON members → checked options (422 or 403 with the reason)."""
    backend = resolve_backend(user.tier, _choice(Backend, "backend", fields.backend))
    mode = _choice(Mode, "mode", fields.mode) or Mode.MONO
    effective = backend or Backend(settings.transcription_backend)
    if effective == Backend.ASSEMBLYAI and settings.assemblyai_api_key is None:
        raise Invalid("the assemblyai backend is not configured on this service")
    return JobOptions(
        priority=resolve_priority(user.tier, _choice(Priority, "priority", fields.priority)),
        language=_language(fields.language),
        backend=backend,
        mode=mode,
        webhook_url=checked_url("webhook_url", fields.webhook_url, settings),
        transcription=transcription_options(fields, user, settings, effective, mode),
    )


def transcription_options(
    fields: JobFields, user: User, settings: Settings, backend: Backend, mode: Mode
) -> TranscriptionOptions:
    """The job's transcription options, its model resolved to a name of the allow-list: a later
    change of the fleet's default does not change what a queued job runs with."""
    if backend == Backend.ASSEMBLYAI:
        _assemblyai_can(fields)
    table = settings.model_table
    options = TranscriptionOptions(
        model=resolve_model(user.tier, fields.model or None, table, settings.default_model_name),
        task=_choice(Task, "task", fields.task) or Task.TRANSCRIBE,
        prompt=fields.prompt or None,
        hotwords=fields.hotwords or None,
        timestamps=_choice(Timestamps, "timestamps", fields.timestamps) or Timestamps.SEGMENT,
        start=fields.start,
        end=fields.end,
        speakers=fields.speakers,
        min_speakers=fields.min_speakers,
        max_speakers=fields.max_speakers,
    )
    _check_span(options)
    _check_speakers(options, mode)
    if options.task == Task.TRANSLATE:
        _check_translates(options, user, settings)
    return options


def _assemblyai_can(fields: JobFields) -> None:
    """AssemblyAI has no model to choose, takes no prompt or hotwords, and does not translate: a
    job asking for them there is refused rather than run without them."""
    for name in ("model", "prompt", "hotwords"):
        if getattr(fields, name):
            raise Invalid(f"{name}: the assemblyai backend has no such option; leave it out or use 'local'")
    if _choice(Task, "task", fields.task) == Task.TRANSLATE:
        raise Invalid("task 'translate': the assemblyai backend does not translate; use 'local'")


def _check_span(options: TranscriptionOptions) -> None:
    """End after start (each is a finite number ≥ 0 already: JobFields' bounds). Whether start
    lies within the file is known once the file is probed (`job_creation.transcribed_seconds`)."""
    if options.end is not None and options.end <= (options.start or 0.0):
        raise Invalid(f"end ({options.end:g} s) must be after start ({options.start or 0:g} s)")


def _check_speakers(options: TranscriptionOptions, mode: Mode) -> None:
    given = [n for n in ("speakers", "min_speakers", "max_speakers") if getattr(options, n) is not None]
    if given and mode != Mode.DIALOGUE:
        raise Invalid(f"{given[0]}: speaker counts need mode 'dialogue'")
    if options.speakers is not None and len(given) > 1:
        raise Invalid(f"speakers: give the number of speakers or {given[1]}, not both")
    low, high = options.min_speakers, options.max_speakers
    if low is not None and high is not None and low > high:
        raise Invalid(f"min_speakers ({low}) is more than max_speakers ({high})")


def _check_translates(options: TranscriptionOptions, user: User, settings: Settings) -> None:
    """Only a multilingual model translates: refused up front, naming those the caller may use."""
    table, model = settings.model_table, options.model or settings.default_model_name
    if is_multilingual(table[model]):
        return
    able = [
        n for n in allowed_models(user.tier, table, settings.default_model_name) if is_multilingual(table[n])
    ]
    choose = f"choose a multilingual model: {', '.join(able)}" if able else "none is offered to you"
    raise Invalid(f"task 'translate' needs a multilingual model; model '{model}' is English-only ({choose})")


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
