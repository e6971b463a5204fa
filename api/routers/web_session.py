"""`/v1/web/session`: the web app signs in and out here (see api/web_session.py for the cookie and
its CSRF rules)."""

from fastapi import APIRouter, Request, Response

from api import accounts, web_session
from api.deps import CsrfDep, RateLimiterDep, SettingsDep, TokensDep, UoW, client_ip
from api.schemas import UserOut, WebSessionIn, WebSessionOut, error_responses
from core.errors import Forbidden, Unauthorized
from core.logging import get_logger
from core.tokens import TokenCodec
from repositories.models import User

log = get_logger(__name__)

router = APIRouter(prefix="/v1/web/session", tags=["web session"])

CROSS_SITE = "a sign-in from another site was refused"


@router.post("", response_model=WebSessionOut, responses=error_responses(401, 403, 422, 429, 503))
def sign_in(
    body: WebSessionIn,
    request: Request,
    response: Response,
    uow: UoW,
    tokens: TokensDep,
    csrf: CsrfDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
) -> WebSessionOut:
    """Sign in with a password (the rate limits of `POST /v1/auth/login`, shared with it): the
    session is an HttpOnly cookie, `verbatim_web`; the body has the CSRF token that every other
    method than GET, HEAD and OPTIONS must send back as `X-CSRF-Token` along with the cookie."""
    if web_session.is_cross_site(request):
        raise Forbidden(CROSS_SITE)
    limiter.hit("login:ip", client_ip(request), settings.login_limit_per_ip)
    limiter.hit("login:email", body.email, settings.login_limit_per_email)
    user = accounts.login(uow.session, body.email, body.password)
    log.info("web_session.signed_in", user_id=user.id)
    return _session(request, response, tokens, csrf, user)


@router.get("", response_model=WebSessionOut, responses=error_responses(401))
def current_session(
    request: Request, response: Response, uow: UoW, tokens: TokensDep, csrf: CsrfDep
) -> WebSessionOut:
    """Who is signed in, and the CSRF token; the cookie is renewed for another full lifetime."""
    user = web_session.cookie_user(request, uow.session, tokens)
    if user is None:
        raise Unauthorized("not signed in")
    return _session(request, response, tokens, csrf, user)


@router.delete("", status_code=204, responses=error_responses(403))
def sign_out(request: Request, uow: UoW, tokens: TokensDep, csrf: CsrfDep) -> Response:
    """Sign out: the cookie is cleared. With a live session this is a write like any other (the
    same site and the CSRF token); a cookie that no longer works is cleared without them."""
    try:
        user = web_session.cookie_user(request, uow.session, tokens)
    except Unauthorized:
        user = None
    if user is not None:
        web_session.check_write(request, csrf, user)
        log.info("web_session.signed_out", user_id=user.id)
    response = Response(status_code=204)
    web_session.clear_cookie(request, response)
    return response


def _session(
    request: Request, response: Response, tokens: TokenCodec, csrf: web_session.CsrfTokens, user: User
) -> WebSessionOut:
    token = web_session.issue(tokens, user)
    web_session.set_cookie(request, response, token)
    # The body carries the CSRF token and the cookie a credential: no cache may keep either.
    response.headers["Cache-Control"] = "no-store"
    return WebSessionOut(
        user=UserOut.model_validate(user), csrf_token=csrf.token_for(user), expires_in=token.expires_in
    )
