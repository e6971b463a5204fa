"""`POST /v1/jobs` under load, against the real API process (uvicorn) on PostgreSQL: slow uploads
hold no database connection, and a user's limits hold however many submissions arrive at once."""

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from core.db import make_engine, make_session_factory
from core.enums import Tier
from core.tiers import policy_for
from repositories.models import Job, Reservation
from tests.conftest import auth, create_user, speech
from tests.e2e.fleet import Fleet
from tests.e2e.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SLOW_UPLOADS = 20
PARALLEL_SUBMISSIONS = 20
BOUNDARY = "verbatim-slow-upload"


def new_user(fleet: Fleet, tier: Tier) -> tuple[str, str]:
    engine = make_engine(fleet.database_url)
    try:
        return create_user(make_session_factory(engine), tier)
    finally:
        engine.dispose()


def count(fleet: Fleet, model: type[Job] | type[Reservation], user_id: str) -> int:
    with fleet.sql().connect() as conn:
        query = select(func.count()).select_from(model).where(model.user_id == user_id)
        return int(conn.execute(query).scalar_one())


def start_slow_upload(url: str, key: str) -> socket.socket:
    """A multipart `POST /v1/jobs` that announces 10 MB and has sent its headers and the first KB."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="slow.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    address = urlsplit(url)
    request = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    ).encode()
    connection = socket.create_connection((address.hostname, address.port))
    connection.sendall(request + head + bytes(1024))
    return connection


@contextmanager
def slow_uploads(url: str, key: str, number: int) -> Iterator[None]:
    """`number` uploads in flight, each sending 1 KB a second, for the block; closed after it."""
    connections = [start_slow_upload(url, key) for _ in range(number)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for connection in connections:
                connection.sendall(bytes(1024))

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join()
        for connection in connections:
            connection.close()


def test_slow_uploads_hold_no_database_connection(fleet: Fleet) -> None:
    user_id, key = new_user(fleet, Tier.ENTERPRISE)
    with slow_uploads(fleet.url, key, SLOW_UPLOADS):
        # Each upload holds its reservation once its body has begun to stream (past auth and limits).
        wait_until(lambda: count(fleet, Reservation, user_id) == SLOW_UPLOADS, 15, "every upload in flight")
        with httpx.Client(base_url=fleet.url, headers=auth(key), timeout=30) as api:
            for _ in range(3):
                started = time.perf_counter()
                response = api.get("/v1/jobs")
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                assert elapsed < 1.0, f"GET /v1/jobs took {elapsed:.2f} s"
    # The uploads that were cut off give their slots back, and leave no job.
    wait_until(lambda: count(fleet, Reservation, user_id) == 0, 15, "the reservations released")
    assert count(fleet, Job, user_id) == 0


def test_parallel_submissions_of_a_free_user_create_exactly_its_limit(fleet: Fleet) -> None:
    user_id, key = new_user(fleet, Tier.FREE)
    audio = speech("jfk/jfk.flac").read_bytes()
    start = threading.Barrier(PARALLEL_SUBMISSIONS)

    def submit(_: int) -> int:
        with httpx.Client(base_url=fleet.url, headers=auth(key), timeout=60) as api:
            start.wait()
            name = f"{uuid.uuid4().hex[:6]}.flac"
            return api.post("/v1/jobs", files={"file": (name, audio)}).status_code

    with ThreadPoolExecutor(PARALLEL_SUBMISSIONS) as pool:
        statuses = sorted(pool.map(submit, range(PARALLEL_SUBMISSIONS)))

    limit = policy_for(Tier.FREE).max_active_jobs
    assert statuses == [202] * limit + [429] * (PARALLEL_SUBMISSIONS - limit)
    assert count(fleet, Job, user_id) == limit
    assert count(fleet, Reservation, user_id) == 0
