"""`GET /health` needs no credentials, so its figures are a snapshot taken at most once a second
per API process: however often it is called, the stores are read once per window."""

import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from api import probes

WAIT = 10  # seconds: a bound on waits that normally end at once, so a broken run fails, not hangs


class Clock:
    """`api.probes`' monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Statements:
    """Counts the SQL statements every engine sends, and can hold them until released: a refresh
    of the health figures reads the database, so this counts refreshes and can stall one."""

    def __init__(self) -> None:
        self.count = 0
        self.held = False
        self.arrived = threading.Event()
        self.release = threading.Event()

    def __call__(self, *_: Any) -> None:
        self.count += 1
        if self.held:
            self.arrived.set()
            assert self.release.wait(WAIT), "the held statement was never released"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(probes, "monotonic", fake)
    return fake


@pytest.fixture
def statements() -> Iterator[Statements]:
    counter = Statements()
    event.listen(Engine, "before_cursor_execute", counter)
    yield counter
    counter.release.set()
    event.remove(Engine, "before_cursor_execute", counter)


def checked_at(body: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(body["checked_at"])


def test_calls_within_a_second_read_the_stores_once(client, clock, statements):
    first = client.get("/health")
    assert first.status_code == 200 and first.json()["status"] == "ok"
    per_refresh = statements.count
    assert per_refresh >= 1

    clock.advance(probes.HEALTH_SNAPSHOT_SECONDS - 0.01)
    sequential = [client.get("/health") for _ in range(10)]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda _: client.get("/health"), range(16)))

    assert statements.count == per_refresh
    assert {(r.status_code, r.text) for r in sequential + concurrent} == {(200, first.text)}

    clock.advance(0.01)
    later = client.get("/health")
    assert statements.count == 2 * per_refresh
    assert checked_at(later.json()) > checked_at(first.json())


def test_a_store_going_down_shows_once_the_snapshot_is_a_second_old(client, settings, clock):
    before = client.get("/health")
    assert before.json()["storage"] == "ok"
    # A file where the storage folder should be: nothing can be written under it.
    shutil.rmtree(settings.storage_dir)
    settings.storage_dir.write_bytes(b"")

    assert client.get("/health/ready").status_code == 503  # readiness is checked on every call
    assert client.get("/health").text == before.text  # within the second: the snapshot
    clock.advance(probes.HEALTH_SNAPSHOT_SECONDS)
    after = client.get("/health")
    assert after.status_code == 503
    assert (after.json()["status"], after.json()["storage"]) == ("degraded", "unavailable")
    assert checked_at(after.json()) > checked_at(before.json())


def test_callers_during_a_refresh_answer_with_the_last_snapshot(client, clock, statements):
    first = client.get("/health").json()
    clock.advance(probes.HEALTH_SNAPSHOT_SECONDS)
    statements.held = True
    with ThreadPoolExecutor(1) as pool:
        refreshing = pool.submit(client.get, "/health")
        assert statements.arrived.wait(WAIT)  # one caller is refreshing, stuck on the database
        meanwhile = [client.get("/health") for _ in range(5)]
        statements.release.set()
        refreshed = refreshing.result(WAIT)

    assert [(r.status_code, r.json()) for r in meanwhile] == [(200, first)] * 5
    assert refreshed.status_code == 200
    assert checked_at(refreshed.json()) > checked_at(first)


def test_the_first_callers_of_a_process_wait_for_its_first_snapshot(client, clock, statements, monkeypatch):
    """A process has nothing to answer with until its first snapshot: the callers that come while
    it is taken wait for it, rather than fail or each take one of their own."""
    arrivals = threading.Semaphore(0)
    get = probes.Snapshot.get

    def counted_get(self: probes.Snapshot[Any]) -> Any:
        arrivals.release()
        return get(self)

    monkeypatch.setattr(probes.Snapshot, "get", counted_get)
    statements.held = True
    with ThreadPoolExecutor(4) as pool:
        callers = [pool.submit(client.get, "/health") for _ in range(4)]
        assert statements.arrived.wait(WAIT)  # the first snapshot is being taken, held
        for _ in callers:
            assert arrivals.acquire(timeout=WAIT)  # all four are in, while the first is held
        statements.held = False
        statements.release.set()
        answers = [c.result(WAIT) for c in callers]
    read_by_the_four = statements.count

    clock.advance(probes.HEALTH_SNAPSHOT_SECONDS)
    client.get("/health")
    per_refresh = statements.count - read_by_the_four
    assert {(r.status_code, r.text) for r in answers} == {(200, answers[0].text)}
    assert read_by_the_four == per_refresh  # one snapshot for the four
