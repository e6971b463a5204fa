"""The RQ dashboard at `/dashboard`, for admins only.

rq-dashboard is a Flask blueprint with no authentication of its own, and it shows job arguments and
tracebacks and can requeue and delete work. So it is mounted (as WSGI, through a2wsgi) behind
`DashboardGate`, which lets a request through only for an admin: by `Authorization: Bearer` (an
API key or access token, resolved exactly as the API resolves it), by the session cookie that
`POST /dashboard/login` sets, or by the web app's session cookie (api/web_session.py). Anything
else gets `401`/`403`, and never the page.

CSRF: both cookies are `SameSite=Strict` (a cross-site request never carries them, so a link or
form elsewhere cannot drive the dashboard), and a state-changing request (rq-dashboard's requeue,
delete, empty and compact actions are all POSTs) authenticated by the cookie must also come with an
`Origin` (or, failing that, `Referer`) of this host. The one mutating GET rq-dashboard offers
(`/requeue/<queue>`) is refused. Responses may not be framed, against clickjacking.

The dashboard reads the API's own Redis connection (`app.state.queues.redis`), with RQ's JSON
serializer, like the API and the workers.
"""

import html
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import rq_dashboard
import rq_dashboard.web
from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from flask import Flask, abort
from flask import request as flask_request
from redis import Redis
from rq import Worker
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from api import accounts, web_session
from api.web_session import SAFE_METHODS, is_same_origin
from core.config import Settings
from core.errors import AppError, Forbidden, Unauthorized
from core.logging import get_logger
from core.queues import QueueManager
from core.tokens import AccessToken
from repositories.models import User

log = get_logger(__name__)

PREFIX = "/dashboard"
SESSION_COOKIE = "verbatim_session"
# The session token is an access token made for this audience only: it is refused as a bearer
# token, and a bearer token is refused as a session.
SESSION_AUDIENCE = "verbatim:dashboard"
NOT_ADMIN = "the dashboard needs an admin account"
_FRAMING = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'")]


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard under PREFIX. Include the dashboard router (login, logout) first: the
    mount would otherwise take its paths."""
    # a2wsgi types WSGI and ASGI with its own, narrower protocols; Flask and Starlette fit them.
    dashboard = cast(ASGIApp, WSGIMiddleware(cast(Any, _flask_dashboard(app, settings))))
    # `/dashboard` itself is gated too, rather than answered with a redirect to `/dashboard/`.
    app.router.routes.append(Route(PREFIX, DashboardGate(dashboard, bare=True), include_in_schema=False))
    app.mount(PREFIX, DashboardGate(dashboard), name="dashboard")


# --- the gate ------------------------------------------------------------------------------------


class DashboardGate:
    """ASGI: passes a request on to the dashboard only for an admin (see the module docstring)."""

    def __init__(self, dashboard: ASGIApp, *, bare: bool = False) -> None:
        self._dashboard = dashboard
        self._bare = bare  # the route of PREFIX itself: an admin is sent on to PREFIX + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the dashboard has no websockets
            await WebSocketClose()(scope, receive, send)
            return
        request = Request(scope, receive)
        # Off the event loop: resolving the credential reads the database.
        refusal = await run_in_threadpool(_refusal, request)
        if refusal is None and self._bare:
            refusal = RedirectResponse(request.url_for("dashboard", path="/").path)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._dashboard(scope, receive, _deny_framing(send))


def _refusal(request: Request) -> Response | None:
    """None if the caller may use the dashboard; otherwise the 401/403/405 to answer with."""
    try:
        caller = _caller(request)
    except Unauthorized as exc:
        return refused(request, exc)
    if caller is None:
        return refused(request, Unauthorized(), prompt_only=True)
    user, by_cookie = caller
    if not user.is_admin:
        log.info("dashboard.refused", user_id=user.id)
        return refused(request, Forbidden(NOT_ADMIN))
    if by_cookie and request.method not in SAFE_METHODS and not is_same_origin(request):
        log.warning("dashboard.cross_site_refused", user_id=user.id, method=request.method)
        return refused(request, Forbidden("a cross-site request to the dashboard was refused"))
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))
    if request.method in SAFE_METHODS and path.startswith("/requeue/"):
        # rq-dashboard answers GET here too, and requeues: state changes only by (checked) POST.
        return JSONResponse({"error": "method_not_allowed", "detail": "use POST"}, 405, {"Allow": "POST"})
    return None


def _caller(request: Request) -> tuple[User, bool] | None:
    """The user behind the request's credential and whether it came by cookie; None without one."""
    state = request.app.state
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        with state.sessions() as session:
            user, stale_key_id = accounts.user_for_bearer(session, state.tokens, credential.strip())
        if stale_key_id is not None:
            accounts.record_key_use(state.sessions(), stale_key_id)
        return user, False
    cookie = request.cookies.get(SESSION_COOKIE)
    with state.sessions() as session:
        if cookie:
            return accounts.user_for_token(session, state.tokens, cookie, audience=SESSION_AUDIENCE), True
        # An admin signed in to the web app follows its link here without signing in again.
        web_user = web_session.cookie_user(request, session, state.tokens)
    return None if web_user is None else (web_user, True)


def refused(request: Request, exc: AppError, *, prompt_only: bool = False) -> Response:
    """A refusal: the sign-in form for a browser, `{"error", "detail"}` for an API client. The
    status is the refusal's either way. `prompt_only`: no credential came, so no error is shown."""
    if "text/html" in request.headers.get("accept", ""):
        error = None if prompt_only else exc.detail
        return login_page(request, error=error, status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"error": exc.error, "detail": exc.detail}, exc.status_code, exc.headers)


def _deny_framing(send: Send) -> Send:
    async def framed(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *_FRAMING]}
        await send(message)

    return framed


# --- the session cookie --------------------------------------------------------------------------


def set_session(response: Response, token: AccessToken) -> None:
    # Secure: browsers keep it to https, and to http on localhost (a secure context) for development.
    response.set_cookie(
        SESSION_COOKIE,
        token.token,
        max_age=token.expires_in,
        path=PREFIX,
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")


# --- the sign-in page ----------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Verbatim · sign in</title>
<style>
  body {{ font-family: system-ui, sans-serif; background: #f4f5f7; margin: 0; }}
  main {{ max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem;
         border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
  h1 {{ font-size: 1.3rem; margin: 0 0 .3rem; }}
  p {{ color: #555; margin: 0 0 1.2rem; }}
  label {{ display: block; margin: .8rem 0 .3rem; font-size: .9rem; }}
  input {{ width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; }}
  button {{ margin-top: 1.2rem; width: 100%; padding: .6rem; font-size: 1rem; cursor: pointer; }}
  .error {{ color: #a40000; background: #fdecec; padding: .5rem .7rem; border-radius: 4px; }}
  .out {{ margin-top: 1rem; }}
  .out button {{ background: none; border: 0; color: #555; text-decoration: underline; }}
</style>
</head>
<body>
<main>
  <h1>Verbatim queues</h1>
  <p>Sign in with an admin account to open the RQ dashboard.</p>
  {error}
  <form method="post" action="{action}">
    <label for="email">Email</label>
    <input id="email" name="email" type="email" autocomplete="username" required value="{email}">
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
    <button type="submit">Sign in</button>
  </form>
  {sign_out}
</main>
</body>
</html>
"""
_SIGN_OUT = '<form class="out" method="post" action="{action}"><button type="submit">Sign out</button></form>'


def login_page(
    request: Request,
    *,
    error: str | None = None,
    status_code: int = 200,
    email: str = "",
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The sign-in form (also the body of a browser's 401/403 from the gate)."""
    signed_in = SESSION_COOKIE in request.cookies
    body = _PAGE.format(
        action=html.escape(request.url_for("dashboard_login").path),
        email=html.escape(email),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
        sign_out=_SIGN_OUT.format(action=html.escape(request.url_for("dashboard_logout").path))
        if signed_in
        else "",
    )
    # Never cached (it answers for the dashboard's own URLs), never framed.
    extra = {"Cache-Control": "no-store", **{k.decode(): v.decode() for k, v in _FRAMING}}
    return HTMLResponse(body, status_code=status_code, headers={**(headers or {}), **extra})


# --- rq-dashboard --------------------------------------------------------------------------------


class _Dashboard(Flask):
    """rq-dashboard's blueprint on the API's own Redis connection. rq-dashboard reads the
    connection from `app.redis_conn`; given only a URL, it would make a client per request."""

    def __init__(self, queues: Callable[[], QueueManager]) -> None:
        super().__init__(rq_dashboard.__name__)  # its package holds the templates and static files
        self.queues = queues

    @property
    def redis_conn(self) -> Redis:
        return self.queues().redis


class _JSONWorker(Worker):
    """rq-dashboard 0.9 lists workers with RQ's default (pickle) serializer, so reading a busy
    worker's current task, which is JSON, would fail: the workers page would break under load."""

    @classmethod
    def all(
        cls,
        connection: Redis | None = None,
        job_class: Any = None,
        queue_class: Any = None,
        queue: Any = None,
        serializer: Any = None,
    ) -> list[BaseWorker]:
        return super().all(connection, job_class, queue_class, queue, serializer or JSONSerializer)


def _flask_dashboard(api: FastAPI, settings: Settings) -> Flask:
    # rq-dashboard's serializer switch is module-wide; JSON is the only serializer in this process.
    rq_dashboard.web.config.serializer = JSONSerializer
    rq_dashboard.web.Worker = _JSONWorker

    def queues() -> QueueManager:
        manager: QueueManager = api.state.queues  # set by the API's lifespan
        return manager

    app = _Dashboard(queues)
    app.config.from_object(rq_dashboard.default_settings)
    # Only shown, in the page's (single-entry) instance picker: no credentials, no query string.
    app.config["RQ_DASHBOARD_REDIS_URL"] = (_redis_label(settings),)
    app.register_blueprint(rq_dashboard.blueprint)
    # Its hook makes a Redis client per request from the URL above; ours keeps the API's connection.
    app.before_request_funcs["rq_dashboard"].remove(rq_dashboard.web.push_rq_connection)

    @app.before_request
    def one_instance_with_our_queues() -> None:
        if (flask_request.view_args or {}).get("instance_number", 0) != 0:
            abort(404)
        queues().declare()

    return app


def _redis_label(settings: Settings) -> str:
    if not settings.redis_url:
        return "redis"
    url = urlsplit(settings.redis_url)
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.hostname or ''}{port}{url.path}"
