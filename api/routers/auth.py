from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from api import accounts
from api.deps import CurrentUser, RateLimiterDep, SettingsDep, TokensDep, UoW, client_ip
from api.schemas import LoginForm, PasswordChange, RegisterIn, RegistrationOut, TokenOut, UserOut
from api.schemas import error_responses as _errors

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/register", status_code=202, response_model=RegistrationOut, responses=_errors(422, 429, 503))
def register(
    body: RegisterIn, request: Request, uow: UoW, limiter: RateLimiterDep, settings: SettingsDep
) -> RegistrationOut:
    """Create an account (tier `free`) with a password of at least 10 characters, then log in.

    The answer is the same for an email that already has an account, which is left as it was:
    this route does not tell which emails are registered."""
    limiter.hit("register:ip", client_ip(request), settings.register_limit_per_ip)
    accounts.register(uow.session, body.email, body.password)
    return RegistrationOut(email=body.email.lower())


@router.post("/login", response_model=TokenOut, responses=_errors(401, 422, 429, 503))
def login(
    form: Annotated[LoginForm, Form()],
    request: Request,
    response: Response,
    uow: UoW,
    tokens: TokensDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
) -> TokenOut:
    """OAuth2 password flow (form fields `username` = email, `password`): a short-lived bearer token."""
    limiter.hit("login:ip", client_ip(request), settings.login_limit_per_ip)
    limiter.hit("login:email", form.username, settings.login_limit_per_email)
    user = accounts.login(uow.session, form.username, form.password)
    token = tokens.issue(user.id, user.token_version)
    # RFC 6749 5.1: a response carrying a token must not be cached.
    response.headers["Cache-Control"] = "no-store"
    return TokenOut(access_token=token.token, expires_in=token.expires_in)


@router.get("/me", response_model=UserOut, responses=_errors(401))
def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.post("/password", status_code=204, responses=_errors(401, 403, 422, 429, 503))
def change_password(
    body: PasswordChange, user: CurrentUser, uow: UoW, limiter: RateLimiterDep, settings: SettingsDep
) -> Response:
    """Change your password. Every access token issued before stops working, this one included:
    log in again. API keys are not affected."""
    # A stolen token must not become a way to guess the password and keep the account.
    limiter.hit("password:user", user.id, settings.login_limit_per_email)
    accounts.change_password(uow.session, user, body.current_password, body.new_password)
    return Response(status_code=204)
