"""`redact`, the one place credentials leave log lines: each shape of credential the service hands
out or accepts, and what must survive around it."""

import json
import logging

import pytest

from core.logging import JsonFormatter, TextFormatter, redact

SIGNED = "eyJrIjoidXBsb2Fkcy91LzEud2F2In0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # The signed-URL routes: the last path segment is the credential, whatever it looks like.
        ('"PUT /v1/uploads/abc.def HTTP/1.1" 200', '"PUT /v1/uploads/[redacted] HTTP/1.1" 200'),
        ("GET /v1/downloads/opaque-token?x=1", "GET /v1/downloads/[redacted]?x=1"),
        (f"http://h/v1/downloads/{SIGNED}", "http://h/v1/downloads/[redacted]"),
        # Query parameters named like a credential, ours and S3's presigned ones.
        (
            "/v1/jobs?api_key=k1&limit=5&password=p+w",
            "/v1/jobs?api_key=[redacted]&limit=5&password=[redacted]",
        ),
        (
            "/x?X-Amz-Credential=AK%2F1&X-Amz-Signature=ab",
            "/x?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]",
        ),
        ("/v1/jobs?access_token=t&q=jfk", "/v1/jobs?access_token=[redacted]&q=jfk"),
        # API keys, bearer credentials, JWTs and signed tokens anywhere in a line.
        ("key vbt_ab12cd34_s3cr3t-Value given", "key vbt_[redacted] given"),
        ("Authorization: Bearer abc.def-ghi=", "Authorization: Bearer [redacted]"),
        ("send as 'Authorization: Bearer <key>'", "send as 'Authorization: Bearer <key>'"),
        ("token eyJhbGciOi.eyJzdWIiOi.c2ln here", "token [redacted] here"),
        (f"token {SIGNED} here", "token [redacted] here"),
        # The password of a URL's user info.
        ("redis://:pw-1@127.0.0.1:6379/0", "redis://:[redacted]@127.0.0.1:6379/0"),
        ("postgresql+psycopg2://app:pw@db/verbatim", "postgresql+psycopg2://app:[redacted]@db/verbatim"),
        # Not credentials: left alone.
        ("/v1/uploads", "/v1/uploads"),
        ("/v1/jobs?limit=5&q=jfk", "/v1/jobs?limit=5&q=jfk"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact_takes_out_every_credential_and_nothing_else(line: str, expected: str) -> None:
    assert redact(line) == expected


def record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    entry = logging.LogRecord("api", logging.INFO, __file__, 1, message, args, None)
    entry.__dict__.update(fields)
    return entry


def test_both_formats_redact_the_message_and_the_fields() -> None:
    line = record("fetched %s", "/v1/downloads/t0k3n", url="http://h/v1/uploads/t0k3n", password="hunter22")
    for formatter in (JsonFormatter(), TextFormatter()):
        text = formatter.format(line)
        assert "t0k3n" not in text and "hunter22" not in text
        assert "/v1/downloads/[redacted]" in text and "/v1/uploads/[redacted]" in text
    assert json.loads(JsonFormatter().format(line))["password"] == "[redacted]"
