"""Requests to the OpenAI-compatible routes, and what their refusals must look like."""

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import auth, speech

JFK = speech("jfk/jfk.flac")  # 11 s


def post(client: TestClient, key: str | None, route: str = "transcriptions", path: Path = JFK, **fields):
    headers = auth(key) if key else {}
    with path.open("rb") as f:
        return client.post(f"/v1/audio/{route}", headers=headers, files={"file": (path.name, f)}, data=fields)


def openai_error(response: Any, status: int, kind: str, code: str, param: str | None = None) -> str:
    """The error's message, once its status and OpenAI shape are checked."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body == {
        "error": {"message": body["error"]["message"], "type": kind, "param": param, "code": code}
    }
    assert body["error"]["message"]
    return str(body["error"]["message"])
