"""The web app's session, and the rules that keep another site from riding on it.

`POST /v1/web/session` trades a password for an HttpOnly cookie, `verbatim_web`, holding an access
token made for the audience `verbatim:web` alone: the cookie is refused as a bearer token, and a
bearer token is refused as the cookie. Any route that takes the current user accepts the cookie
when the request has no `Authorization` header (api/deps.py).

CSRF, in two layers, for a cookie-authenticated request that may change state (any method but
GET, HEAD and OPTIONS):
- its `Origin` (or, failing that, `Referer`) must name this host (`is_same_origin`);
- its `X-CSRF-Token` header must equal the session's CSRF token, which the session routes hand
  to the page's script. The token is an HMAC of the user's id and token version under a key
  derived from the JWT secret, so it needs no storage and another site cannot compute it. It is
  not bound to one cookie value: a renewal (each `GET /v1/web/session` issues a new token) in one
  tab must not break the writes of another tab that still holds the token it was given. It changes
  when the token version does, that is with every password change, which ends every session too.

The cookie is also `SameSite=Strict`, so a browser sends it on no request that another site starts.
"""

import base64
import hashlib
import hmac
from functools import cached_property
from urllib.parse import urlsplit

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from api import accounts
from core.config import Settings
from core.errors import Forbidden
from core.logging import get_logger
from core.tokens import AccessToken, TokenCodec, load_jwt_secret
from repositories.models import User

log = get_logger(__name__)

WEB_COOKIE = "verbatim_web"
WEB_AUDIENCE = "verbatim:web"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CROSS_SITE = "a cross-site request with the web session cookie was refused"
BAD_CSRF = f"a write with the web session cookie needs the {CSRF_HEADER} header that /v1/web/session gives"
_CSRF_KEY_CONTEXT = b"verbatim web csrf v1"


def is_same_origin(request: Request) -> bool:
    """Whether the request's `Origin` (or `Referer`) names this host. Browsers send `Origin` with
    every POST; a request with neither header, or `Origin: null`, is not taken as same-origin."""
    source = request.headers.get("origin") or request.headers.get("referer")
    return bool(source) and urlsplit(source).netloc == request.headers.get("host")


def is_cross_site(request: Request) -> bool:
    """Whether the request names an origin, and one that is not this host: for a request that
    needs no session (signing in), where an API client sends no `Origin` at all."""
    return "origin" in request.headers and not is_same_origin(request)


class CsrfTokens:
    """The CSRF token of a user's web sessions; one per process, the secret loaded on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @cached_property
    def _key(self) -> bytes:
        # A key of its own, derived from the JWT secret: the two never share a key.
        return hmac.new(load_jwt_secret(self._settings).encode(), _CSRF_KEY_CONTEXT, hashlib.sha256).digest()

    def token_for(self, user: User) -> str:
        message = f"{user.id}:{user.token_version}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def matches(self, user: User, presented: str | None) -> bool:
        expected = self.token_for(user).encode()
        return presented is not None and hmac.compare_digest(presented.encode(), expected)


def check_write(request: Request, csrf: CsrfTokens, user: User) -> None:
    """Let a cookie-authenticated request through if it changes nothing, or if it comes from this
    site's own page (same origin, and the session's CSRF token); `Forbidden` otherwise."""
    if request.method in SAFE_METHODS:
        return
    if not is_same_origin(request):
        log.warning("web_session.cross_site_refused", user_id=user.id, method=request.method)
        raise Forbidden(CROSS_SITE)
    if not csrf.matches(user, request.headers.get(CSRF_HEADER)):
        log.warning("web_session.csrf_refused", user_id=user.id, method=request.method)
        raise Forbidden(BAD_CSRF)


def cookie_user(request: Request, session: Session, tokens: TokenCodec) -> User | None:
    """The user of the request's web session cookie; None without the cookie, `Unauthorized` for
    a cookie that is not a valid session (expired, from before a password change, forged)."""
    cookie = request.cookies.get(WEB_COOKIE)
    if not cookie:
        return None
    return accounts.user_for_token(session, tokens, cookie, audience=WEB_AUDIENCE)


def issue(tokens: TokenCodec, user: User) -> AccessToken:
    return tokens.issue(user.id, user.token_version, audience=WEB_AUDIENCE)


def set_cookie(request: Request, response: Response, token: AccessToken) -> None:
    # Path=/: the pages, the API and the dashboard (which takes an admin's web session too).
    response.set_cookie(
        WEB_COOKIE,
        token.token,
        max_age=token.expires_in,
        path="/",
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(WEB_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict")


def _secure(request: Request) -> bool:
    # The scheme the client used: behind a trusted proxy, from its X-Forwarded-Proto (api/app.py).
    return request.url.scheme == "https"
