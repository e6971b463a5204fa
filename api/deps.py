"""Request dependencies: the unit of work, the caller, and the process-wide resources."""

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api import accounts, web_session
from api.probes import Snapshot
from api.schemas import HealthOut
from api.web_session import CsrfTokens
from core.config import Settings
from core.errors import Forbidden, ServiceUnavailable, Unauthorized
from core.logging import get_logger
from core.queues import QueueManager
from core.ratelimit import RateLimiter
from core.signing import UrlSigner
from core.tokens import TokenCodec
from repositories.models import User
from storage.base import Storage

log = get_logger(__name__)


class UnitOfWork:
    """The request's transaction, plus work that must wait until it is committed (enqueues)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._after_commit: list[Callable[[], object]] = []
        self._after_rollback: list[Callable[[], object]] = []
        self._undo: list[Callable[[Session], object]] = []

    def after_commit(self, action: Callable[[], object]) -> None:
        self._after_commit.append(action)

    def after_rollback(self, action: Callable[[], object]) -> None:
        """Undo a side effect made outside the database (a stored file) if the transaction fails."""
        self._after_rollback.append(action)

    def commit_early(self, undo: Callable[[Session], object]) -> None:
        """Commit what is done so far and hand the connection back to the pool, before a slow step
        that needs no database (a request body streaming in): a slow client must not hold one of
        the few connections. The session takes a connection again when it is next used.

        `undo(session)` reverses what this committed, in a transaction of its own, if the request
        fails after all."""
        self.session.commit()
        self._undo.append(undo)

    def rollback(self) -> None:
        self.session.rollback()
        for action in self._after_rollback:
            action()
        for undo in self._undo:
            self._run_undo(undo)

    def _run_undo(self, undo: Callable[[Session], object]) -> None:
        try:
            undo(self.session)
            self.session.commit()
        except Exception as exc:  # the request's own error is the one to answer with
            self.session.rollback()
            log.error("request.undo_failed", error=str(exc))

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


def _sessions(request: Request) -> sessionmaker[Session]:
    """The session factory, for a response that reads the database after the request's own unit
    of work has ended (a stream of events): short sessions of its own, one per read."""
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def _signer(request: Request) -> UrlSigner:
    signer: UrlSigner = request.app.state.signer
    return signer


def _queues(request: Request) -> QueueManager:
    queues: QueueManager = request.app.state.queues
    return queues


def _tokens(request: Request) -> TokenCodec:
    tokens: TokenCodec = request.app.state.tokens
    return tokens


def _metrics(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry = request.app.state.metrics
    return registry


def _health(request: Request) -> Snapshot[HealthOut]:
    snapshot: Snapshot[HealthOut] = request.app.state.health
    return snapshot


def _csrf(request: Request) -> CsrfTokens:
    csrf: CsrfTokens = request.app.state.csrf
    return csrf


def _rate_limiter(request: Request) -> RateLimiter:
    settings: Settings = request.app.state.settings
    return RateLimiter(request.app.state.queues.redis, settings.rate_limit_window_seconds)


# Two schemes for one header, so /docs offers both: log in with a password (OAuth2 password flow),
# or paste an API key.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer vbt_...`")
_oauth2 = OAuth2PasswordBearer(
    tokenUrl="/v1/auth/login", auto_error=False, description="A token from `POST /v1/auth/login`"
)
UoW = Annotated[UnitOfWork, Depends(_unit_of_work, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
SessionsDep = Annotated[sessionmaker[Session], Depends(_sessions)]
StorageDep = Annotated[Storage, Depends(_storage)]
QueuesDep = Annotated[QueueManager, Depends(_queues)]
SignerDep = Annotated[UrlSigner, Depends(_signer)]
TokensDep = Annotated[TokenCodec, Depends(_tokens)]
RateLimiterDep = Annotated[RateLimiter, Depends(_rate_limiter)]
CsrfDep = Annotated[CsrfTokens, Depends(_csrf)]
MetricsDep = Annotated[CollectorRegistry, Depends(_metrics)]
HealthDep = Annotated[Snapshot[HealthOut], Depends(_health)]


def _current_user(
    request: Request,
    uow: UoW,
    tokens: TokensDep,
    csrf: CsrfDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _: Annotated[str | None, Depends(_oauth2)],
) -> User:
    """The caller, from `Authorization: Bearer <API key or access token>`, or else from the web
    app's session cookie, with its CSRF rules (api/web_session.py); 401 otherwise."""
    if credentials is None:
        return _cookie_user(request, uow, tokens, csrf)
    user, stale_key_id = accounts.user_for_bearer(uow.session, tokens, credentials.credentials)
    if stale_key_id is not None:
        uow.after_commit(lambda: accounts.record_key_use(uow.session, stale_key_id))
    return user


def _cookie_user(request: Request, uow: UnitOfWork, tokens: TokenCodec, csrf: CsrfTokens) -> User:
    # Any Authorization header, even one of another scheme, is the credential the client chose.
    if "authorization" in request.headers:
        raise Unauthorized()
    user = web_session.cookie_user(request, uow.session, tokens)
    if user is None:
        raise Unauthorized()
    web_session.check_write(request, csrf, user)
    return user


def client_ip(request: Request) -> str:
    # The client's address: when the peer is a trusted proxy (FORWARDED_ALLOW_IPS), the app's
    # proxy-headers middleware (api/app.py) has put the address from X-Forwarded-For here.
    return request.client.host if request.client else "unknown"


def _admin(user: Annotated[User, Depends(_current_user)]) -> User:
    if not user.is_admin:
        raise Forbidden("this needs an admin account")
    return user


CurrentUser = Annotated[User, Depends(_current_user)]
AdminUser = Annotated[User, Depends(_admin)]
