"""The FastAPI application factory. Connections are made in the lifespan, not at import."""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import probes
from api.dashboard import mount_dashboard
from api.metrics import metrics_registry
from api.routers import (
    admin,
    admin_jobs,
    api_keys,
    auth,
    downloads,
    events,
    health,
    job_audio,
    jobs,
    languages,
    metrics,
    models,
    openai_audio,
    queues,
    uploads,
    usage,
    web_session,
)
from api.routers import dashboard as dashboard_routes
from api.routers import webhooks as webhook_routes
from api.routers.web import is_web_path, mount_web
from api.schemas import ErrorOut
from api.security_headers import SecurityHeaders, web_headers
from api.web_session import CsrfTokens
from core.config import Settings, get_settings
from core.db import make_engine, make_session_factory
from core.errors import AppError
from core.logging import get_logger
from core.queues import QueueManager
from core.signing import UrlSigner
from core.tokens import TokenCodec
from storage.factory import make_storage

log = get_logger(__name__)

# What a client told "no database connection came free in time" should wait before trying again.
BUSY_RETRY_AFTER_SECONDS = 5


def create_app(settings: Settings | None = None, redis: Redis | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_timeout=settings.database_pool_timeout_seconds)
        client = redis or _redis(settings)
        app.state.settings = settings
        app.state.sessions = make_session_factory(engine)
        app.state.queues = QueueManager(client, settings)
        app.state.storage = make_storage(settings)
        app.state.tokens = TokenCodec(settings)
        app.state.signer = UrlSigner(settings)
        app.state.csrf = CsrfTokens(settings)
        app.state.health = probes.health_snapshot(app.state.sessions, app.state.queues, app.state.storage)
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
    for router in (
        jobs.router,
        events.router,
        job_audio.router,
        models.router,
        languages.router,
        usage.router,
        queues.router,
        admin.router,
        admin_jobs.router,
        health.router,
    ):
        app.include_router(router)
    app.include_router(metrics.router)
    app.include_router(openai_audio.router)
    app.include_router(webhook_routes.router)
    for router in (uploads.router, downloads.router):
        app.include_router(router)
    for router in (auth.router, web_session.router, api_keys.router):
        app.include_router(router)
    # The sign-in routes first: the dashboard's mount would otherwise take their paths.
    app.include_router(dashboard_routes.router)
    mount_dashboard(app, settings)
    mount_web(app)
    _install_error_handlers(app)
    _document_errors_as_handled(app)
    app.add_middleware(SecurityHeaders, headers=web_headers(settings), is_web_path=is_web_path)
    # Outermost, so everything inside sees the client's address: from X-Forwarded-For when the
    # peer is one of the trusted proxies (FORWARDED_ALLOW_IPS), else the peer's own. The app does
    # this rather than uvicorn, so that one setting holds however the API is started.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app


def _redis(settings: Settings) -> Redis:
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set (./scripts/run starts an embedded Redis for you)")
    # Connect timeout: a Redis that drops packets must fail a request (503), not hang it.
    return Redis.from_url(settings.redis_url, health_check_interval=30, socket_connect_timeout=5)


def _error(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _allowed_methods(request: Request, named: str) -> str:
    """`Allow` for a 405: the methods of every route of the resource. Starlette names (`named`)
    only those of the first route whose path matched: `GET /v1/jobs/{id}`, not its `DELETE`. The
    resource is that first route's path, a concrete one before a template (OpenAPI's rule):
    `/v1/jobs/stats` allows GET only, though `DELETE /v1/jobs/{id}` would take the URL."""
    routes = [r for r in iter_route_contexts(request.app.routes) if r.methods]
    matched = [r for r in routes if r.matches(request.scope)[0] != Match.NONE]
    if not matched:
        return named
    return ", ".join(
        sorted({m for r in matched if r.path_format == matched[0].path_format for m in r.methods or ()})
    )


def _document_errors_as_handled(app: FastAPI) -> None:
    """The schema says what the handlers below answer: FastAPI documents its own 422 (on a route
    that declares none) as its `HTTPValidationError`, which this API never sends; it is `ErrorOut`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _validation_errors_as_error_out(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _validation_errors_as_error_out(schema: dict[str, Any]) -> dict[str, Any]:
    for operation in (op for path in schema["paths"].values() for op in path.values()):
        body = operation.get("responses", {}).get("422", {}).get("content", {}).get("application/json", {})
        if body.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
            body["schema"] = {"$ref": "#/components/schemas/ErrorOut"}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components.setdefault("ErrorOut", ErrorOut.model_json_schema())
    return schema


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        return _error(exc.status_code, exc.error, exc.detail, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Framework errors (an unknown path, a wrong method) take the same shape as ours.
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers malformed JSON with 422 but JSON that is not UTF-8 (RFC 8259 8.1) with
            # a bare 400: one answer for both, as `POST /v1/jobs` (which parses its own JSON) gives.
            return _error(422, "validation_error", "body: JSON decode error: the body is not UTF-8")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request, headers.get("Allow", ""))
        error = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return _error(exc.status_code, error, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, "validation_error", detail)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> Response:
        # Nobody is left to read an answer (the server drops it): one line, not a traceback. The
        # route's template, not the path: an upload URL's path is its credential.
        route = getattr(request.scope.get("route"), "path", None)
        log.info("request.client_disconnected", method=request.method, route=route)
        return Response(status_code=499)  # nginx's "client closed request"

    @app.exception_handler(OperationalError)
    async def database_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database.unavailable", error=str(exc.orig))
        return _error(503, "service_unavailable", "the database is unavailable, try again shortly")

    @app.exception_handler(PoolTimeout)
    async def database_busy(_: Request, exc: PoolTimeout) -> JSONResponse:
        # Every connection of the pool stayed taken while this request waited: overloaded, not down.
        log.warning("database.pool_exhausted", error=str(exc))
        return _error(
            503,
            "service_unavailable",
            "the service is busy, try again shortly",
            {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(RedisError)
    async def redis_down(_: Request, exc: RedisError) -> JSONResponse:
        log.error("redis.unavailable", error=str(exc))
        return _error(503, "service_unavailable", "the job queue is unavailable, try again shortly")
