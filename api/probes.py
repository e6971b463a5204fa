"""Cheap checks of the three stores an API process depends on, for the health routes and `/metrics`,
and the figures of `GET /health`, read at most once a second per process.

A probe reports a dependency as down (and logs why); it never raises.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from time import monotonic
from typing import Generic, TypeVar

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.schemas import EngineOut, HealthOut, QueueHealthOut
from core.logging import get_logger
from core.queue_metrics import oldest_queued_seconds
from core.queues import QueueManager
from repositories.jobs import JobRepository
from storage.base import Storage

log = get_logger(__name__)

# How old the figures `GET /health` answers with may be. The route needs no credentials and reading
# them takes tens of round trips to the database and Redis: read once a second per process, however
# many callers, they cost the stores nothing more under load or abuse.
HEALTH_SNAPSHOT_SECONDS = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Readiness:
    database: bool
    redis: bool
    storage: bool

    @property
    def ready(self) -> bool:
        return self.database and self.redis and self.storage

    def as_words(self) -> dict[str, str]:
        return {name: "ok" if up else "unavailable" for name, up in vars(self).items()}


def readiness(sessions: sessionmaker[Session], redis: Redis, storage: Storage) -> Readiness:
    return Readiness(database_up(sessions), redis_up(redis), storage_up(storage))


def database_up(sessions: sessionmaker[Session]) -> bool:
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        # The driver's message (host, port, reason), not SQLAlchemy's, which repeats the statement.
        _down("database", getattr(exc, "orig", None) or exc)
        return False
    return True


def redis_up(redis: Redis) -> bool:
    try:
        redis.ping()
    except RedisError as exc:
        _down("redis", exc)
        return False
    return True


def storage_up(storage: Storage) -> bool:
    try:
        storage.ping()
    except Exception as exc:  # any backend's error means the same: uploads would fail now
        _down("storage", exc)
        return False
    return True


def _down(dependency: str, exc: BaseException) -> None:
    log.warning("health.dependency_down", dependency=dependency, error=f"{type(exc).__name__}: {exc}")


class Snapshot(Generic[T]):
    """The latest result of `take()`, taken again once it is `max_age` seconds old by one caller.
    Callers that come while that refresh runs answer with the previous result rather than wait on
    it or repeat it: a slow store slows one request, and the load on the stores stays one refresh
    per `max_age`. Only the first callers of all, with nothing to answer yet, wait for the first."""

    def __init__(self, take: Callable[[], T], max_age: float) -> None:
        self._take, self._max_age = take, max_age
        self._lock = threading.Lock()
        self._latest: tuple[float, T] | None = None  # (monotonic time it was taken, result)

    def get(self) -> T:
        latest = self._latest
        if latest is not None and monotonic() - latest[0] < self._max_age:
            return latest[1]
        if self._lock.acquire(blocking=latest is None):
            try:
                if self._latest is latest:  # else the caller this one waited behind took it
                    self._latest = (monotonic(), self._take())
            finally:
                self._lock.release()
        taken = self._latest
        assert taken is not None  # set by this caller or by the one it waited behind
        return taken[1]


def health_snapshot(
    sessions: sessionmaker[Session], queues: QueueManager, storage: Storage
) -> Snapshot[HealthOut]:
    return Snapshot(lambda: health(sessions, queues, storage), HEALTH_SNAPSHOT_SECONDS)


def health(sessions: sessionmaker[Session], queues: QueueManager, storage: Storage) -> HealthOut:
    """Readiness plus the first figures an operator looks at, as of now."""
    checked_at = datetime.now(UTC)
    jobs_count = _jobs_count(sessions)
    figures = _queue_figures(queues)
    storage_ok = storage_up(storage)
    healthy = jobs_count is not None and figures is not None and storage_ok
    return HealthOut(
        status="ok" if healthy else "degraded",
        checked_at=checked_at,
        database="ok" if jobs_count is not None else "unavailable",
        redis="ok" if figures is not None else "unavailable",
        storage="ok" if storage_ok else "unavailable",
        workers=figures[0] if figures is not None else None,
        jobs_count=jobs_count,
        queues=figures[1] if figures is not None else [],
        engines=_engines(queues) if figures is not None else [],
    )


def _jobs_count(sessions: sessionmaker[Session]) -> int | None:
    try:
        with sessions() as session:
            return JobRepository(session).estimated_count()
    except SQLAlchemyError as exc:
        _down("database", getattr(exc, "orig", None) or exc)
        return None


def _queue_figures(queues: QueueManager) -> tuple[int, list[QueueHealthOut]] | None:
    """(workers, per queue figures), or None when Redis is down."""
    try:
        ages = oldest_queued_seconds(queues)
        per_queue = [
            QueueHealthOut(
                name=s.name,
                queued=s.queued,
                started=s.started,
                workers=s.workers,
                oldest_queued_seconds=ages[s.name],
            )
            for s in queues.stats()
        ]
        return queues.worker_count(), per_queue
    except RedisError as exc:
        _down("redis", exc)
        return None


def _engines(queues: QueueManager) -> list[EngineOut]:
    try:
        return [
            EngineOut.model_validate({"worker": name, **info})
            for name, info in sorted(queues.engines().items())
        ]
    except RedisError:
        return []
