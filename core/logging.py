"""Structured logs: an event name plus key=value fields, rendered as one JSON object per line.

log.info("chunk.transcribed", job_id=job_id, chunk_index=3, seconds=2.1)

Every process (the API under uvicorn, workers, the launchers) calls `configure_logging` once at
start; it routes uvicorn's server and access lines through the same handler. Whatever a line says,
`redact` takes the credentials out of it on the way to the stream: the one place that does.
"""

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# uvicorn adds `color_message` to its records: the same message again, with terminal colours.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "color_message"}
REDACTED = "[redacted]"
_CREDENTIAL_PARAM = r"[\w.-]*(?:token|sig|signature|key|password|passwd|secret|credential|auth)[\w.-]*"
_SECRETS = (
    # The path segment that is the credential of a signed URL (api/routers/uploads.py, downloads.py).
    (re.compile(r"(/v1/(?:uploads|downloads)/)[^/?#\s\"']+"), rf"\1{REDACTED}"),
    # Query parameters named like a credential: ?token=, ?api_key=, S3's X-Amz-Signature=, ...
    (re.compile(rf"(?i)([?&;]{_CREDENTIAL_PARAM}=)[^&;#\s\"']*"), rf"\1{REDACTED}"),
    # Our API keys (core/security.py) and bearer credentials, wherever they turn up.
    (re.compile(r"\bvbt_[A-Za-z0-9_-]+"), f"vbt_{REDACTED}"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]+=*"), rf"\1{REDACTED}"),  # RFC 6750's b64token
    # JWTs, and our signed-URL tokens (core/signing.py) elsewhere than in their route: base64 JSON.
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?"), REDACTED),
    # The password of a URL's user info: redis://:secret@host, postgresql://user:secret@host.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@:\s\"']*:)[^/@\s\"']+@"), rf"\1{REDACTED}@"),
)
# Fields whose name says their value is a credential are dropped whatever the value looks like.
_SECRET_FIELD = re.compile(
    r"(?i)^(?:password|passwd|secret|token|authorization|signature|api_key|\w+_(?:password|secret|token))$"
)


def redact(text: str) -> str:
    """`text` with every credential this service knows the shape of replaced by [redacted]."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
    return {k: REDACTED if _SECRET_FIELD.match(k) else v for k, v in fields.items()}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(self._render(record))

    def _render(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(self._render(record))

    def _render(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class EventLogger:
    """A thin wrapper so call sites read `log.info("event", key=value)`."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra=fields, exc_info=exc_info, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, True, fields)


class FieldsFilter(logging.Filter):
    """Adds fixed fields to every record that does not set them itself."""

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


def bind_fields(**fields: Any) -> None:
    """Tag every line this process logs from now on, whoever logs it (our code, RQ, a library):
    a worker process binds its RQ worker name. A later call overrides the same keys.

    The filter goes on the root handlers, since a logger's filters do not see the records
    propagated from its child loggers.
    """
    for handler in logging.getLogger().handlers:
        tag = next((f for f in handler.filters if isinstance(f, FieldsFilter)), None)
        if tag is None:
            handler.addFilter(FieldsFilter(**fields))
        else:
            tag.fields.update(fields)


def get_logger(name: str) -> EventLogger:
    return EventLogger(name)


class AccessLogFields(logging.Filter):
    """Turns uvicorn's access line (`'%s - "%s %s HTTP/%s" %d'`) into an `http.request` event
    with its parts as fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            record.msg, record.args = "http.request", ()
            record.__dict__.update(method=method, path=path, status=status, client=client)
        return True


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """One handler on the root logger, for this process's lines and every library's.

    uvicorn configures its own loggers before it calls the app factory (api/main.py), with
    handlers of its own that print whole request paths: those handlers go, and its records
    propagate to ours.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(AccessLogFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # VERBATIM_LOG_LEVEL decides, as for every other line
