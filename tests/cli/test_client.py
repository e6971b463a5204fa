"""The client library against a scripted HTTP transport: what it sends, how it reads errors, and
how its events stream survives a dropped connection (no event missed, none repeated)."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from verbatim_client import ApiError, ChunkEvent, Client, StatusEvent
from verbatim_client.client import _Resume

Handler = Callable[[httpx.Request], httpx.Response]


def frame(event_id: int, name: str, data: dict[str, object]) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data)}\n\n".encode()


STATUS_PENDING = frame(1, "status", {"status": "pending", "chunks_total": None, "chunks_completed": 0})
CHUNK_0 = frame(2, "chunk", {"index": 0, "start": 0.0, "end": 9.5, "text": "And so my fellow"})
CHUNK_1 = frame(3, "chunk", {"index": 1, "start": 9.5, "end": 11.0, "text": "Americans"})
DONE = frame(4, "status", {"status": "completed", "chunks_total": 2, "chunks_completed": 2, "error": None})


class Broken(httpx.SyncByteStream):
    """A body that sends `parts`, then loses the connection."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts

    def __iter__(self) -> Iterator[bytes]:
        yield from self.parts
        raise httpx.ReadError("connection reset by peer")


def client(handler: Handler, **kwargs: Any) -> Client:
    return Client("http://verbatim.test", "vbt_key", transport=httpx.MockTransport(handler), **kwargs)


def stream(*parts: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=Broken(*parts))


def whole(*parts: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=b"".join(parts))


def test_events_resume_after_a_drop_with_last_event_id_missing_and_repeating_nothing() -> None:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("Last-Event-ID"))
        assert request.headers["Authorization"] == "Bearer vbt_key"
        return stream(STATUS_PENDING, CHUNK_0) if len(asked) == 1 else whole(CHUNK_1, DONE)

    with client(handler, reconnect_delay=0) as verbatim:
        seen = list(verbatim.events("job-1"))
    assert asked == [None, "2"]
    assert [e.id for e in seen] == ["1", "2", "3", "4"]
    assert [e.text for e in seen if isinstance(e, ChunkEvent)] == ["And so my fellow", "Americans"]
    assert isinstance(seen[-1], StatusEvent) and seen[-1].status == "completed"


def test_an_event_cut_in_half_by_the_drop_is_asked_for_again() -> None:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("Last-Event-ID"))
        if len(asked) == 1:
            return stream(STATUS_PENDING, CHUNK_0[:20])  # "id: 2\nevent: chunk\n..." and no end
        return whole(CHUNK_0, DONE)

    with client(handler, reconnect_delay=0) as verbatim:
        seen = list(verbatim.events("job-1"))
    assert asked == [None, "1"]
    assert [e.id for e in seen] == ["1", "2", "4"]


def test_the_stream_ends_at_the_final_status() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        assert calls == 1, "connected again after the final status"
        return whole(STATUS_PENDING, DONE, CHUNK_1)  # nothing after the final status is read

    with client(handler, reconnect_delay=0) as verbatim:
        assert [e.id for e in verbatim.events("job-1")] == ["1", "4"]


def test_a_refusal_is_raised_at_once_and_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(404, json={"error": "not_found", "detail": "no job job-1"})

    with client(handler, reconnect_delay=0) as verbatim, pytest.raises(ApiError) as raised:
        list(verbatim.events("job-1"))
    assert (raised.value.status_code, raised.value.detail, calls) == (404, "no job job-1", 1)


def test_a_server_error_is_retried_and_the_stream_goes_on() -> None:
    answers = iter([httpx.Response(503, json={"error": "service_unavailable", "detail": "db"})])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, whole(STATUS_PENDING, DONE))

    with client(handler, reconnect_delay=0) as verbatim:
        assert [e.id for e in verbatim.events("job-1")] == ["1", "4"]


def test_a_stream_that_keeps_ending_early_gives_up_after_max_reconnects() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return whole()  # closes at once, no final status

    with client(handler, reconnect_delay=0, max_reconnects=3) as verbatim, pytest.raises(ConnectionError):
        list(verbatim.events("job-1"))
    assert calls == 4


def test_reconnects_wait_the_servers_retry_doubled_on_each_failure_up_to_a_cap() -> None:
    with client(lambda r: httpx.Response(200)) as verbatim:
        delays = [verbatim._reconnect_delay(_Resume("1", 3000), failures) for failures in (1, 2, 3, 10)]
        assert delays == [3.0, 6.0, 12.0, 30.0]
        assert verbatim._reconnect_delay(_Resume(None), 1) == verbatim.reconnect_delay


def test_a_file_is_uploaded_as_multipart_with_its_options(tmp_path: Path) -> None:
    audio = tmp_path / "talk.flac"
    audio.write_bytes(b"fLaC audio")
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202, json={"id": "j1", "status": "pending", "filename": "talk.flac"})

    with client(handler) as verbatim:
        job = verbatim.submit(audio, model="tiny.en", language=None, start=1.5)
    body = sent[0].read()
    assert sent[0].headers["Content-Type"].startswith("multipart/form-data")
    assert b'filename="talk.flac"' in body and b"fLaC audio" in body
    assert b'name="model"\r\n\r\ntiny.en' in body and b'name="start"\r\n\r\n1.5' in body
    assert b'name="language"' not in body  # None leaves an option out
    assert (job.id, job.status) == ("j1", "pending")


def test_a_url_is_sent_as_json_for_the_service_to_fetch() -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.read()))
        return httpx.Response(202, json={"id": "j2", "status": "pending"})

    with client(handler) as verbatim:
        verbatim.submit("https://example.com/a%20talk.mp3", filename="a talk.mp3", start=2.0)
    assert sent == [{"audio_url": "https://example.com/a%20talk.mp3", "filename": "a talk.mp3", "start": 2.0}]


def test_errors_carry_the_apis_error_detail_and_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": "rate_limited", "detail": "too many active jobs"}
        return httpx.Response(429, json=body, headers={"Retry-After": "7"})

    with client(handler) as verbatim, pytest.raises(ApiError) as raised:
        verbatim.job("j1")
    error = raised.value
    assert (error.status_code, error.error, error.detail, error.retry_after) == (
        429,
        "rate_limited",
        "too many active jobs",
        7.0,
    )
    assert str(error) == "429 rate_limited: too many active jobs"


def test_a_transcript_not_ready_yet_is_an_error_not_an_empty_file() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, json={"id": "j1", "status": "processing"})

    with client(handler) as verbatim, pytest.raises(ApiError, match="processing"):
        verbatim.transcript("j1", "srt")
