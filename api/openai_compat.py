"""OpenAI's audio API in Verbatim's terms: what `POST /v1/audio/transcriptions` and
`/v1/audio/translations` read from their form, the bodies they answer with, and their errors in
OpenAI's shape, so that OpenAI's SDKs (and tools built on them) work unchanged.

Where the two differ:
- `model`: a name from `GET /v1/models`. OpenAI's own names (`whisper-1`, `gpt-4o-transcribe`, ...)
  mean the fleet's default model; for a translation, the default if it is multilingual, else the
  first multilingual model the caller's tier may use.
- `temperature` (0 to 1) is accepted and changes nothing: decoding here is deterministic, the same
  audio gives the same text on any worker and any retry.
- `verbose_json`: `language` is the ISO 639-1 code (`en`) where OpenAI writes the name; segments
  carry no token ids or decoding statistics (`tokens` is empty; `seek`, `temperature`,
  `avg_logprob`, `compression_ratio` and `no_speech_prob` are 0).
- Errors: `{"error": {"message", "type", "param", "code"}}` with OpenAI's statuses: a refused value
  or file is `400` (`invalid_request_error`, where the rest of this API says 415 or 422), spent
  monthly minutes are `429` `insufficient_quota` (not 402), as OpenAI's quota errors are.
"""

import inspect
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from api.events import sse_frame
from api.submission import JobFields, form_fields
from core.config import Settings
from core.errors import BadRequest
from core.models import is_multilingual
from core.options import Task
from core.tiers import allowed_models
from repositories.models import User

# OpenAI's names of its audio models (the SDK's `AudioModel`): they mean this fleet's own.
OPENAI_MODELS = frozenset(
    {
        "whisper-1",
        "gpt-transcribe",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-4o-mini-transcribe-2025-12-15",
        "gpt-4o-transcribe-diarize",
    }
)


class ResponseFormat(StrEnum):
    JSON = "json"
    TEXT = "text"
    SRT = "srt"
    VERBOSE_JSON = "verbose_json"
    VTT = "vtt"


class Granularity(StrEnum):
    WORD = "word"
    SEGMENT = "segment"


# The formats a stream's final text can stand for (a stream carries text, not captions).
STREAMED_FORMATS = (ResponseFormat.JSON, ResponseFormat.TEXT)
_GRANULARITIES = ("timestamp_granularities[]", "timestamp_granularities")


class OpenAIInvalid(BadRequest):
    """A refused request, naming the parameter as OpenAI's API names it (`param`)."""

    def __init__(self, param: str | None, detail: str, *, code: str = "invalid_value") -> None:
        super().__init__(detail)
        self.param = param
        self.error = code


# --- the request ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioRequest:
    """What OpenAI's form asks for, checked (400 naming the parameter)."""

    task: Task
    model: str | None
    language: str | None
    prompt: str | None
    response_format: ResponseFormat
    granularities: frozenset[Granularity]
    stream: bool

    @classmethod
    def parse(cls, values: Mapping[str, list[str]], task: Task) -> "AudioRequest":
        """`values`: every value of each form field (`timestamp_granularities[]` comes once per item)."""
        fmt = _format(_last(values, "response_format"))
        granularities = _granularities(values, fmt, task)
        stream = _flag("stream", _last(values, "stream"))
        if stream and fmt not in STREAMED_FORMATS:
            raise OpenAIInvalid("stream", f"a stream sends text: use response_format json or text, not {fmt}")
        _temperature(_last(values, "temperature"))
        return cls(
            task=task,
            model=_last(values, "model"),
            language=_last(values, "language"),
            prompt=_last(values, "prompt"),
            response_format=fmt,
            granularities=granularities,
            stream=stream,
        )

    def job_fields(self, user: User, settings: Settings) -> JobFields:
        """The job's options, checked as `POST /v1/jobs` checks its own (422 naming a field)."""
        words = Granularity.WORD in self.granularities
        return form_fields(
            {
                "model": job_model(self.model, self.task, user, settings) or "",
                "language": self.language or "",
                "prompt": self.prompt or "",
                "task": self.task.value,
                "timestamps": "word" if words else "",
            }
        )


def job_model(requested: str | None, task: Task, user: User, settings: Settings) -> str | None:
    """The fleet's model a request names: its own name, or for one of OpenAI's the model that
    can do the task (the default, unless a translation needs a multilingual one)."""
    table, default = settings.model_table, settings.default_model_name
    if requested not in OPENAI_MODELS or requested in table:
        return requested
    if task == Task.TRANSLATE and not is_multilingual(table[default]):
        able = [n for n in allowed_models(user.tier, table, default) if is_multilingual(table[n])]
        return able[0] if able else default
    return default


def _last(values: Mapping[str, list[str]], name: str) -> str | None:
    given = values.get(name) or [""]
    return given[-1] or None


def _format(raw: str | None) -> ResponseFormat:
    try:
        return ResponseFormat(raw or ResponseFormat.JSON)
    except ValueError:
        allowed = ", ".join(ResponseFormat)
        raise OpenAIInvalid("response_format", f"unknown response_format '{raw}': use {allowed}") from None


def _granularities(
    values: Mapping[str, list[str]], fmt: ResponseFormat, task: Task
) -> frozenset[Granularity]:
    """Those asked for; `verbose_json` without any has segments, as OpenAI's has."""
    raw = [v for name in _GRANULARITIES for v in values.get(name, []) if v]
    try:
        asked = frozenset(Granularity(v) for v in raw)
    except ValueError:
        detail = f"timestamp_granularities: use word and/or segment, not {', '.join(raw)}"
        raise OpenAIInvalid("timestamp_granularities", detail) from None
    if asked and (fmt != ResponseFormat.VERBOSE_JSON or task != Task.TRANSCRIBE):
        detail = "timestamp_granularities needs a transcription with response_format verbose_json"
        raise OpenAIInvalid("timestamp_granularities", detail)
    return asked or frozenset({Granularity.SEGMENT})


def _flag(name: str, raw: str | None) -> bool:
    if raw is None or raw.lower() in ("false", "0"):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise OpenAIInvalid(name, f"{name} must be true or false, not '{raw[:40]}'")


def _temperature(raw: str | None) -> None:
    """Accepted from 0 to 1, as OpenAI does, and not used (see the module's docstring)."""
    if raw is None:
        return
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise OpenAIInvalid("temperature", f"temperature must be a number from 0 to 1, not '{raw[:40]}'")


def check_awaitable(seconds: float | None, settings: Settings) -> None:
    """Refuse audio too long to wait for in one request (`sync_max_audio_seconds`). A file whose
    container states no duration is taken: its length is known only once the job runs."""
    limit = settings.sync_max_audio_seconds
    if seconds is not None and seconds > limit:
        raise OpenAIInvalid(
            "file",
            f"the audio is {seconds / 60:.1f} min long; this route waits for at most "
            f"{limit / 60:.1f} min of audio. Submit it with POST /v1/jobs, then follow "
            "GET /v1/jobs/{id}/events or fetch GET /v1/jobs/{id}/transcript",
            code="audio_too_long",
        )


# --- the answer ----------------------------------------------------------------------------------


def json_body(text: str, duration: float, task: Task) -> dict[str, Any]:
    """`json`: the text, and (a transcription's) the audio seconds it was billed, as OpenAI's usage."""
    if task == Task.TRANSLATE:
        return {"text": text}
    return {"text": text, "usage": _usage(duration)}


def verbose_body(stored: dict[str, Any], task: Task, granularities: frozenset[Granularity]) -> dict[str, Any]:
    """`verbose_json` from the transcript's stored json (`worker.writers`)."""
    language = "en" if task == Task.TRANSLATE else stored.get("language") or ""
    body: dict[str, Any] = {
        "task": task.value,
        "language": language,
        "duration": stored["duration"],
        "text": stored["text"],
    }
    if Granularity.SEGMENT in granularities:
        body["segments"] = [_segment(s) for s in stored["segments"]]
    if Granularity.WORD in granularities:
        body["words"] = [_word(w) for s in stored["segments"] for w in s.get("words") or []]
    if task == Task.TRANSCRIBE:
        body["usage"] = _usage(stored["duration"])
    return body


def _usage(seconds: float) -> dict[str, Any]:
    return {"type": "duration", "seconds": seconds}


def _segment(segment: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": segment["id"],
        "seek": 0,
        "start": segment["start"],
        "end": segment["end"],
        "text": segment["text"],
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": 0.0,
        "compression_ratio": 0.0,
        "no_speech_prob": 0.0,
    }


def _word(word: dict[str, Any]) -> dict[str, Any]:
    return {"word": word["text"].strip(), "start": word["start"], "end": word["end"]}


def delta_frame(delta: str) -> bytes:
    return _event({"type": "transcript.text.delta", "delta": delta})


def done_frame(text: str) -> bytes:
    return _event({"type": "transcript.text.done", "text": text})


def error_frame(status: int, error: str, detail: str) -> bytes:
    """An error once the stream has begun: OpenAI's SDKs raise it as an `APIError`."""
    _, body, _ = error_parts(status, error, detail)
    return sse_frame("error", json.dumps(body, ensure_ascii=False))


def _event(data: dict[str, Any]) -> bytes:
    return sse_frame(str(data["type"]), json.dumps(data, ensure_ascii=False))


# --- errors --------------------------------------------------------------------------------------


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorOut(BaseModel):
    """An error of the OpenAI-compatible routes, in OpenAI's shape."""

    error: OpenAIError


# Where this API's status is not the one OpenAI gives for the same refusal.
_OPENAI_STATUS = {402: 429, 415: 400, 422: 400}


def error_parts(
    status: int, error: str, detail: str, param: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """This API's error (`status`, `error` code, `detail`) as OpenAI gives it: its status, its body,
    and headers. A retry that cannot help is marked so (`x-should-retry: false`): OpenAI's SDKs
    retry every 429, 409 and 5xx by themselves, and each retry here would be a new job."""
    kind, code, headers = "invalid_request_error", error, {}
    if status == 401:
        code = "invalid_api_key"
    elif status == 402:
        kind = code = "insufficient_quota"
        headers["x-should-retry"] = "false"
    elif status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    error_body = {"message": detail, "type": kind, "param": param, "code": code}
    return _OPENAI_STATUS.get(status, status), {"error": error_body}, headers


def error_response(
    status: int,
    error: str,
    detail: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    retry: bool = True,
) -> JSONResponse:
    code, body, extra = error_parts(status, error, detail, param)
    if not retry:
        extra["x-should-retry"] = "false"
    return JSONResponse(body, status_code=code, headers={**(headers or {}), **extra})


Handler = Callable[[Request, Exception], Awaitable[Response] | Response]


class OpenAIRoute(APIRoute):
    """A route whose errors take OpenAI's shape. The app's own handlers still decide every error's
    status and message (one home for those); what they answer is reshaped, so the rest of the API
    keeps its `{"error", "detail"}`."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        handlers, by_status = scope.get("starlette.exception_handlers", ({}, {}))
        reshaped = (
            {kind: _reshaped(handler) for kind, handler in handlers.items()},
            {status: _reshaped(handler) for status, handler in by_status.items()},
        )
        await super().handle({**scope, "starlette.exception_handlers": reshaped}, receive, send)


def _reshaped(handler: Handler) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        if inspect.iscoroutinefunction(handler):
            response = await handler(request, exc)  # type: ignore[misc]
        else:
            response = await run_in_threadpool(handler, request, exc)
        return _in_openai_shape(response, exc)  # type: ignore[arg-type]

    return handle


def _in_openai_shape(response: Response, exc: Exception) -> Response:
    """`{"error": code, "detail": message}` as OpenAI's error; any other answer as it is (a 499
    to a client that is gone has no body)."""
    try:
        body = json.loads(getattr(response, "body", b"") or b"null")
    except ValueError:
        return response
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return response
    kept = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    return error_response(response.status_code, body["error"], str(body.get("detail")), _param(exc), kept)


def _param(exc: Exception) -> str | None:
    """The request parameter an error is about, where it is known."""
    if isinstance(exc, RequestValidationError) and exc.errors():
        names = [str(part) for part in exc.errors()[0].get("loc", ()) if part != "body"]
        return names[-1] if names else None
    param = getattr(exc, "param", None)
    return param if isinstance(param, str) else None
