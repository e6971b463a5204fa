"""`POST /v1/jobs` while other requests run: no database connection is held while a body streams,
a full pool is a 503 to retry, a user's limits are exact under concurrent submissions, and a form
is bounded while it streams. The races are made deterministic: the competing request runs at a
chosen point of the first one (inside its body's stream, or right before one of its statements)."""

import dataclasses
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request

from api.app import create_app
from api.upload import MAX_FIELDS_BYTES, receive_upload
from core.db import session_scope
from core.enums import JobStatus, Tier
from core.errors import BadRequest, PayloadTooLarge
from core.tiers import POLICIES
from repositories.jobs import JobRepository
from repositories.models import Reservation
from storage.factory import make_storage
from tests.api.test_submit_errors import job_total, stored_files
from tests.conftest import auth, create_user, speech
from tests.e2e.support import wait_until

JFK = speech("jfk/jfk.flac")  # 11 s
BOUNDARY = "verbatim-test-boundary"


@pytest.fixture
def free_policy(monkeypatch):
    def set_limits(**limits):
        monkeypatch.setitem(POLICIES, Tier.FREE, dataclasses.replace(POLICIES[Tier.FREE], **limits))

    return set_limits


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def closing() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


def streamed(pieces: list[bytes], during: dict[int, Callable[[], object]] | None = None) -> Iterator[bytes]:
    """The body in `pieces`, sent without a length (chunked); `during[i]` runs before piece i is."""
    for index, piece in enumerate(pieces):
        if during and index in during:
            during[index]()
        yield piece


def post_stream(client, key, body: Iterator[bytes]):
    headers = {**auth(key), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return client.post("/v1/jobs", headers=headers, content=body)


def post_file(client, key, path=JFK):
    with path.open("rb") as f:
        return client.post("/v1/jobs", headers=auth(key), files={"file": (path.name, f)})


def reservations(sessions) -> int:
    with session_scope(sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Reservation)) or 0)


def audio_pieces(path=JFK) -> list[bytes]:
    data = path.read_bytes()
    half = len(data) // 2
    head = part("file", data[:half], path.name)[: -len(b"\r\n")]  # the part goes on in the next piece
    return [head, data[half:] + b"\r\n" + closing()]


@dataclass
class Served:
    """The app under a real uvicorn server in a thread: bodies stream as the client sends them."""

    url: str
    app: FastAPI

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=auth(key), timeout=30)


@pytest.fixture
def served(settings, redis) -> Iterator[Served]:
    app = create_app(settings, redis)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "uvicorn")
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Served(f"http://127.0.0.1:{port}", app)
    server.should_exit = True
    thread.join(10)


def send(served: Served, key: str, body: Iterator[bytes]) -> httpx.Response:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    with served.client(key) as api:
        return api.post("/v1/jobs", headers=headers, content=body)


# --- connections ---------------------------------------------------------------------------------


def test_no_database_connection_is_held_while_the_body_streams(served, sessions):
    _, key = create_user(sessions, Tier.PRO)
    pool = served.app.state.sessions.kw["bind"].pool
    held: list[int] = []

    def look() -> None:
        # The first half is in the server's hands: past auth and limits, reading the body.
        wait_until(lambda: reservations(sessions) == 1, 10, "the upload under way")
        held.append(pool.checkedout())

    response = send(served, key, streamed(audio_pieces(), {1: look}))

    assert response.status_code == 202, response.text
    assert held == [0]


def test_a_full_connection_pool_is_503_with_retry_after(settings, redis, sessions):
    _, key = create_user(sessions, Tier.PRO)
    quick = settings.model_copy(update={"database_pool_timeout_seconds": 0.2})
    app = create_app(quick, redis)
    with TestClient(app) as client:
        engine = app.state.sessions.kw["bind"]
        taken = []
        with pytest.raises(PoolTimeout):  # take every connection the pool has
            while True:
                taken.append(engine.connect())
        try:
            response = client.get("/v1/jobs", headers=auth(key))
        finally:
            for connection in taken:
                connection.close()
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["error"] == "service_unavailable"
        assert client.get("/v1/jobs", headers=auth(key)).status_code == 200


# --- the user's limits ---------------------------------------------------------------------------


def test_an_upload_in_flight_holds_one_of_the_active_jobs_slots(served, sessions, free_policy):
    free_policy(max_active_jobs=1)
    _, key = create_user(sessions, Tier.FREE)
    second: list[httpx.Response] = []

    def another() -> None:
        wait_until(lambda: reservations(sessions) == 1, 10, "the upload under way")
        with served.client(key) as api, JFK.open("rb") as f:
            second.append(api.post("/v1/jobs", files={"file": (JFK.name, f)}))

    response = send(served, key, streamed(audio_pieces(), {1: another}))

    assert response.status_code == 202, response.text
    assert second[0].status_code == 429
    assert second[0].json()["detail"] == (
        "you have 1 active jobs (1 of them uploading); the free tier allows 1 at a time"
    )
    assert reservations(sessions) == 0
    with served.client(key) as api:
        assert api.get("/v1/jobs").json()["total"] == 1


def test_a_refused_upload_gives_its_slot_back(client, sessions, settings, free_policy, tmp_path):
    free_policy(max_active_jobs=1)
    _, key = create_user(sessions, Tier.FREE)
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not audio\n" * 50)

    assert post_file(client, key, notes).status_code == 415
    assert reservations(sessions) == 0
    assert post_file(client, key).status_code == 202


def test_an_upload_cut_off_midway_gives_its_slot_back(client, sessions, settings, free_policy):
    free_policy(max_active_jobs=1)
    _, key = create_user(sessions, Tier.FREE)

    def cut_off():
        raise ConnectionError("the client went away")

    with pytest.raises(ConnectionError):
        post_stream(client, key, streamed(audio_pieces(), {1: cut_off}))

    assert reservations(sessions) == 0
    assert stored_files(settings) == []
    assert post_file(client, key).status_code == 202


@pytest.fixture
def before_statement(client):
    """`before_statement(pattern, n, competing)`: run `competing` once, right before the API's n-th
    statement that matches `pattern` (counted from now)."""
    engine = client.app.state.sessions.kw["bind"]
    armed: list[tuple[re.Pattern[str], list[int], Callable[[], object]]] = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        if not armed:
            return
        pattern, seen, competing = armed[0]
        if pattern.match(statement):
            seen[0] -= 1
            if seen[0] == 0:
                armed.clear()
                competing()

    event.listen(engine, "before_cursor_execute", hook)

    def arm(pattern: str, n: int, competing: Callable[[], object]) -> None:
        armed.append((re.compile(pattern, re.IGNORECASE), [n], competing))

    yield arm
    event.remove(engine, "before_cursor_execute", hook)


def test_concurrent_submissions_cannot_together_pass_the_monthly_quota(
    client, sessions, settings, free_policy, before_statement
):
    """20 s of the month left and two 11 s files: whichever is checked second is refused, though
    both were read while the minutes were still there."""
    free_policy(monthly_minutes=1)
    user_id, key = create_user(sessions, Tier.FREE)
    with session_scope(sessions) as session:  # 40 s of the month's 60 already billed
        JobRepository(session).create(
            user_id=user_id,
            priority="low",
            filename="earlier.flac",
            size_bytes=1,
            source_key="jobs/earlier/source.flac",
            audio_duration_seconds=40.0,
            status=JobStatus.COMPLETED,
        )
    other = []
    # The 1st lock of the user's row takes the reservation, the 2nd admits the job: the competing
    # submission runs, to its commit, after this one has read and probed its audio.
    before_statement(r"\s*UPDATE users\b", 2, lambda: other.append(post_file(client, key)))

    first = post_file(client, key)

    assert other[0].status_code == 202, other[0].text
    assert first.status_code == 402, first.text
    assert first.json()["detail"] == (
        "the audio is 0.2 min long but only 0.1 of this month's audio minutes are left"
    )
    assert job_total(client, key) == 2  # the earlier job and the competing one
    assert reservations(sessions) == 0


# --- the form ------------------------------------------------------------------------------------


def receiving(pieces: list[bytes]) -> tuple[Request, list[bytes]]:
    """A request whose body arrives in `pieces` with no stated length, and the pieces read so far."""
    sent: list[bytes] = []
    waiting = iter(pieces)

    async def receive() -> dict[str, object]:
        piece = next(waiting, None)
        if piece is not None:
            sent.append(piece)
        return {"type": "http.request", "body": piece or b"", "more_body": piece is not None}

    content_type = f"multipart/form-data; boundary={BOUNDARY}".encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/jobs",
        "headers": [(b"content-type", content_type)],
    }
    return Request(scope, receive), sent


def refused_after(settings, pieces: list[bytes], error: type[Exception]) -> int:
    """Feed the body to the upload parser until it refuses; returns how many pieces it read."""
    storage = make_storage(settings)
    request, sent = receiving(pieces)
    with pytest.raises(error):
        anyio.run(
            receive_upload, request, storage, lambda ext: f"jobs/x/source{ext}", settings.max_upload_bytes
        )
    assert stored_files(settings) == []
    return len(sent)


def too_many_fields() -> list[bytes]:
    return [part(f"field{i}", b"x") for i in range(10_000)] + audio_pieces()


# Fields of this size, each within its own bound, cross the bound on all of them together.
LARGE_FIELD_BYTES = 1200


def large_fields() -> list[bytes]:
    return [part(f"field{i}", b"x" * LARGE_FIELD_BYTES) for i in range(15)] + audio_pieces()


def with_epilogue(settings) -> list[bytes]:
    """The form, then (after its end, where the parser reads and drops it) twice the size limit."""
    return [*audio_pieces(), *([bytes(1024 * 1024)] * (2 * settings.max_upload_mb))]


def test_too_many_form_fields_are_400(client, sessions, settings):
    _, key = create_user(sessions, Tier.PRO)
    response = post_stream(client, key, iter(too_many_fields()))
    assert response.status_code == 400
    assert response.json()["detail"] == "the form has more than 16 fields besides `file`"
    assert stored_files(settings) == [] and job_total(client, key) == 0


def test_form_fields_over_their_total_size_are_413(client, sessions, settings):
    _, key = create_user(sessions, Tier.PRO)
    response = post_stream(client, key, iter(large_fields()))
    assert response.status_code == 413
    assert response.json()["detail"] == f"the form's fields besides `file` are over {MAX_FIELDS_BYTES} bytes"
    assert stored_files(settings) == [] and job_total(client, key) == 0


def test_a_chunked_body_over_the_limit_is_413(client, sessions, settings):
    _, key = create_user(sessions, Tier.PRO)
    response = post_stream(client, key, iter(with_epilogue(settings)))
    assert response.status_code == 413
    assert stored_files(settings) == [] and job_total(client, key) == 0


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_the_form_is_refused_as_soon_as_it_goes_past_a_bound(settings, stack):
    """Not after the whole body is read: the parser stops at the piece that crossed the bound."""
    assert refused_after(settings, too_many_fields(), BadRequest) == 17
    assert (
        refused_after(settings, large_fields(), PayloadTooLarge) == MAX_FIELDS_BYTES // LARGE_FIELD_BYTES + 1
    )
    # No length to check up front: the body's bytes are counted as they come.
    assert refused_after(settings, with_epilogue(settings), PayloadTooLarge) <= settings.max_upload_mb + 2
