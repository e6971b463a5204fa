"""The FastAPI application factory. Connections are made in the lifespan, not at import."""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from api.dashboard import mount_dashboard
from api.metrics import metrics_registry
from api.routers import (
    admin,
    admin_jobs,
    api_keys,
    auth,
    downloads,
    health,
    jobs,
    metrics,
    queues,
    uploads,
    usage,
)
from api.routers import dashboard as dashboard_routes
from api.routers import webhooks as webhook_routes
from core.config import Settings, get_settings
from core.db import make_engine, make_session_factory
from core.errors import AppError
from core.logging import get_logger
from core.queues import QueueManager
from core.signing import UrlSigner
from core.tokens import TokenCodec
from storage.factory import make_storage

log = get_logger(__name__)


def create_app(settings: Settings | None = None, redis: Redis | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        client = redis or _redis(settings)
        app.state.settings = settings
        app.state.sessions = make_session_factory(engine)
        app.state.queues = QueueManager(client, settings)
        app.state.storage = make_storage(settings)
        app.state.tokens = TokenCodec(settings)
        app.state.signer = UrlSigner(settings)
        app.state.metrics = metrics_registry(
            app.state.sessions, app.state.queues, app.state.storage, settings
        )
        yield
        engine.dispose()

    app = FastAPI(
        title="Verbatim",
        version="0.1.0",
        summary="Speech-to-text jobs: upload audio, get a transcript.",
        lifespan=lifespan,
    )
    for router in (jobs.router, usage.router, queues.router, admin.router, admin_jobs.router, health.router):
        app.include_router(router)
    app.include_router(metrics.router)
    app.include_router(webhook_routes.router)
    for router in (uploads.router, downloads.router):
        app.include_router(router)
    for router in (auth.router, api_keys.router):
        app.include_router(router)
    # The sign-in routes first: the dashboard's mount would otherwise take their paths.
    app.include_router(dashboard_routes.router)
    mount_dashboard(app, settings)
    _install_error_handlers(app)
    return app


def _redis(settings: Settings) -> Redis:
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set (./scripts/run starts an embedded Redis for you)")
    # Connect timeout: a Redis that drops packets must fail a request (503), not hang it.
    return Redis.from_url(settings.redis_url, health_check_interval=30, socket_connect_timeout=5)


def _error(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        return _error(exc.status_code, exc.error, exc.detail, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        # Framework errors (an unknown path, a wrong method) take the same shape as ours.
        error = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return _error(exc.status_code, error, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, "validation_error", detail)

    @app.exception_handler(OperationalError)
    async def database_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database.unavailable", error=str(exc.orig))
        return _error(503, "service_unavailable", "the database is unavailable, try again shortly")

    @app.exception_handler(RedisError)
    async def redis_down(_: Request, exc: RedisError) -> JSONResponse:
        log.error("redis.unavailable", error=str(exc))
        return _error(503, "service_unavailable", "the job queue is unavailable, try again shortly")
