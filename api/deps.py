"""Request dependencies: the unit of work, the caller, and the process-wide resources."""

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.config import Settings
from core.errors import Forbidden, ServiceUnavailable, Unauthorized
from core.queues import QueueManager
from repositories.models import User
from repositories.users import ApiKeyRepository
from storage.base import Storage


class UnitOfWork:
    """The request's transaction, plus work that must wait until it is committed (enqueues)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._after_commit: list[Callable[[], object]] = []
        self._after_rollback: list[Callable[[], object]] = []

    def after_commit(self, action: Callable[[], object]) -> None:
        self._after_commit.append(action)

    def after_rollback(self, action: Callable[[], object]) -> None:
        """Undo a side effect made outside the database (a stored file) if the transaction fails."""
        self._after_rollback.append(action)

    def rollback(self) -> None:
        self.session.rollback()
        for action in self._after_rollback:
            action()

    def run_after_commit(self) -> None:
        for action in self._after_commit:
            action()


def _unit_of_work(request: Request) -> Iterator[UnitOfWork]:
    # Function scope: commit (and enqueue) before the response is sent, so a client that sees
    # 202 knows its job is durable and queued, and a failure can still become an error response.
    uow = UnitOfWork(request.app.state.sessions())
    try:
        yield uow
        uow.session.commit()
    except OperationalError as exc:
        uow.rollback()
        raise ServiceUnavailable("the database is unavailable, try again shortly") from exc
    except BaseException:
        uow.rollback()
        raise
    finally:
        uow.session.close()
    uow.run_after_commit()


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def _queues(request: Request) -> QueueManager:
    queues: QueueManager = request.app.state.queues
    return queues


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer vbt_...`")
UoW = Annotated[UnitOfWork, Depends(_unit_of_work, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
StorageDep = Annotated[Storage, Depends(_storage)]
QueuesDep = Annotated[QueueManager, Depends(_queues)]


def _current_user(
    uow: UoW, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized()
    user = ApiKeyRepository(uow.session).user_for_key(credentials.credentials)
    if user is None:
        raise Unauthorized()
    return user


def _admin(user: Annotated[User, Depends(_current_user)]) -> User:
    if not user.is_admin:
        raise Forbidden("this needs an admin API key")
    return user


CurrentUser = Annotated[User, Depends(_current_user)]
AdminUser = Annotated[User, Depends(_admin)]
