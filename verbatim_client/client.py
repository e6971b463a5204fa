"""A synchronous client for the Verbatim API, the one the `verbatim` command is built on.

    from verbatim_client import Client

    with Client("http://127.0.0.1:8000", key) as verbatim:
        job = verbatim.submit("talk.mp3", language="en")
        for event in verbatim.events(job.id):  # ends after the job's final status
            ...
        srt = verbatim.transcript(job.id, "srt")

Every call raises `ApiError` when the API refuses (its status code, error and detail), and
httpx's `TransportError` when the service cannot be reached.
"""

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from verbatim_client.schemas import Job, JobEvent, JobPage, Model, StatusEvent, job_event
from verbatim_client.sse import SSEParser

Option = str | int | float | bool | None
MAX_RECONNECT_DELAY = 30.0


class ApiError(Exception):
    """The API answered with an error: `{"error": ..., "detail": ...}` and its status code."""

    def __init__(self, status_code: int, error: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status_code} {error}: {detail}")
        self.status_code, self.error, self.detail, self.retry_after = status_code, error, detail, retry_after


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


@dataclass
class _Resume:
    """Where an events stream picks up after a reconnect, as the server last told it."""

    last_event_id: str | None
    retry_ms: int | None = None


class Client:
    """`url` is the service's base URL; `api_key` is sent as `Authorization: Bearer <key>`.

    Safe to share between threads (httpx's connection pool is). `transport` replaces the network,
    e.g. with `httpx.MockTransport` in tests.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        reconnect_delay: float = 1.0,
        max_reconnects: int = 10,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.reconnect_delay, self.max_reconnects = reconnect_delay, max_reconnects
        # Uploads of long recordings can take a while on a slow link: no overall limit on writes.
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "verbatim-client"},
            timeout=httpx.Timeout(timeout, write=None),
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- jobs ---------------------------------------------------------------------------------

    def submit(self, source: str | Path, *, filename: str | None = None, **options: Option) -> Job:
        """A job for a local file (streamed from disk, never read whole) or an http(s) URL that the
        service fetches. `options` are `POST /v1/jobs`'s: model, language, priority, task, prompt,
        hotwords, timestamps, start, end, mode, speakers, webhook_url...; None leaves one out."""
        given = {name: value for name, value in options.items() if value is not None}
        if is_url(source):
            body = {"audio_url": str(source), **given, **({"filename": filename} if filename else {})}
            return Job.of(self._json(self._http.post("/v1/jobs", json=body)))
        path = Path(source)
        fields = {name: _form_value(value) for name, value in given.items()}
        with path.open("rb") as audio:
            files = {"file": (filename or path.name, audio)}
            return Job.of(self._json(self._http.post("/v1/jobs", files=files, data=fields)))

    def job(self, job_id: str) -> Job:
        return Job.of(self._json(self._http.get(f"/v1/jobs/{job_id}")))

    def jobs(
        self, *, status: str | None = None, search: str | None = None, limit: int = 20, offset: int = 0
    ) -> JobPage:
        """Your jobs, newest first; `search` matches text in the filename or the transcript."""
        params = {"status": status, "q": search, "limit": limit, "offset": offset}
        body = self._json(
            self._http.get("/v1/jobs", params={k: v for k, v in params.items() if v is not None})
        )
        return JobPage([Job.of(item) for item in body["items"]], body["total"])

    def cancel(self, job_id: str) -> Job:
        return Job.of(self._json(self._http.post(f"/v1/jobs/{job_id}/cancel")))

    def transcript(self, job_id: str, fmt: str = "txt") -> bytes:
        """The transcript of a completed job (txt, srt, vtt or json), as the service rendered it."""
        response = self._http.get(f"/v1/jobs/{job_id}/transcript", params={"format": fmt})
        if response.status_code == 202:
            raise ApiError(202, "not_ready", f"job {job_id} is {response.json()['status']}, not completed")
        _raise_for_error(response)
        return response.content

    def models(self) -> list[Model]:
        body = self._json(self._http.get("/v1/models"))
        return [Model(m["id"], bool(m.get("multilingual")), bool(m.get("default"))) for m in body["data"]]

    # --- events -------------------------------------------------------------------------------

    def events(self, job_id: str, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's events as they happen, until its final status. A dropped connection (or a
        5xx) is retried with `Last-Event-ID`, so no event is missed or repeated; after
        `max_reconnects` failed attempts in a row the last error is raised."""
        resume, failures = _Resume(last_event_id), 0
        while True:
            try:
                for event in self._event_stream(job_id, resume):
                    failures = 0
                    yield event
                    if isinstance(event, StatusEvent) and event.final:
                        return
                error: Exception = ConnectionError(f"the events stream of job {job_id} ended early")
            except httpx.TransportError as exc:
                error = exc
            except ApiError as exc:
                if exc.status_code < 500:
                    raise
                error = exc
            failures += 1
            if failures > self.max_reconnects:
                raise error
            time.sleep(self._reconnect_delay(resume, failures))

    def _event_stream(self, job_id: str, resume: _Resume) -> Iterator[JobEvent]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if resume.last_event_id is not None:
            headers["Last-Event-ID"] = resume.last_event_id
        with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
            if response.status_code != 200:
                response.read()
                _raise_for_error(response)
            parser = SSEParser(resume.last_event_id)
            for line in response.iter_lines():
                sse = parser.feed(line)
                resume.last_event_id, resume.retry_ms = parser.last_event_id, parser.retry_ms
                event = job_event(sse) if sse is not None else None
                if event is not None:
                    yield event

    def _reconnect_delay(self, resume: _Resume, failures: int) -> float:
        """The server's `retry:` if it gave one, else ours; doubled on each failure in a row."""
        base = resume.retry_ms / 1000 if resume.retry_ms is not None else self.reconnect_delay
        return float(min(base * 2 ** (failures - 1), MAX_RECONNECT_DELAY))

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        _raise_for_error(response)
        body: dict[str, Any] = response.json()
        return body


def _form_value(value: str | int | float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    error, detail = _error_body(response)
    raise ApiError(response.status_code, error, detail, _retry_after(response.headers))


def _error_body(response: httpx.Response) -> tuple[str, str]:
    """The API's `{"error", "detail"}`; a proxy's HTML error page becomes its reason phrase."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase.lower().replace(" ", "_"), response.text[:200].strip()
    if isinstance(body, dict) and "detail" in body:
        return str(body.get("error", "error")), str(body["detail"])
    return "error", str(body)[:200]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers["Retry-After"])
    except (KeyError, ValueError):
        return None
