"""Cheap checks of the three stores an API process depends on, for the health routes and `/metrics`.

A probe reports a dependency as down (and logs why); it never raises.
"""

from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.logging import get_logger
from storage.base import Storage

log = get_logger(__name__)


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
