"""Browser sign-in for the RQ dashboard: a form that trades an admin's password for a short-lived,
HttpOnly session cookie scoped to `/dashboard` (see `api.dashboard` for the gate that reads it)."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import accounts
from api.dashboard import (
    NOT_ADMIN,
    PREFIX,
    SESSION_AUDIENCE,
    clear_session,
    login_page,
    set_session,
)
from api.deps import RateLimiterDep, SettingsDep, TokensDep, UoW, client_ip
from api.fields import Text
from api.web_session import is_same_origin
from core.errors import AppError, Forbidden
from core.logging import get_logger

log = get_logger(__name__)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

CROSS_SITE = "a sign-in from another site was refused"


@router.get("/login", name="dashboard_login")
def login_form(request: Request) -> HTMLResponse:
    return login_page(request)


@router.post("/login")
def login(
    request: Request,
    email: Annotated[Text, Form()],
    password: Annotated[str, Form()],
    uow: UoW,
    tokens: TokensDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
) -> Response:
    """Check the password (with the API login's rate limits), require an admin, set the session
    cookie and go to the dashboard. A refusal is the form again, with the reason and its status."""
    if not is_same_origin(request):
        return login_page(request, error=CROSS_SITE, status_code=403, email=email)
    try:
        limiter.hit("login:ip", client_ip(request), settings.login_limit_per_ip)
        limiter.hit("login:email", email, settings.login_limit_per_email)
        user = accounts.login(uow.session, email, password)
        if not user.is_admin:
            log.info("dashboard.refused", user_id=user.id)
            raise Forbidden(NOT_ADMIN)
    except AppError as exc:
        return login_page(
            request, error=exc.detail, status_code=exc.status_code, email=email, headers=exc.headers
        )
    log.info("dashboard.signed_in", user_id=user.id)
    response = RedirectResponse(request.url_for("dashboard", path="/").path, status_code=303)
    set_session(response, tokens.issue(user.id, user.token_version, audience=SESSION_AUDIENCE))
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/logout", name="dashboard_logout")
def logout(request: Request) -> Response:
    if not is_same_origin(request):
        return login_page(request, error="a sign-out from another site was refused", status_code=403)
    response = RedirectResponse(request.url_for("dashboard_login").path, status_code=303)
    clear_session(response)
    return response
