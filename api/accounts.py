"""Accounts: registration, password login and change, API keys, the admin's changes to a user, and
which user a bearer credential stands for."""

from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.enums import Tier
from core.errors import Conflict, Forbidden, NotFound, Unauthorized
from core.logging import get_logger
from core.security import KEY_SCHEME, hash_password, new_api_key, password_needs_rehash, verify_password
from core.tokens import TokenCodec
from repositories.models import ApiKey, User, utcnow
from repositories.users import ApiKeyRepository, UserRepository

log = get_logger(__name__)

# How stale `api_keys.last_used_at` may get: at most one write per key per minute, not per request.
KEY_USE_RESOLUTION = timedelta(minutes=1)
# One message for an unknown email and a wrong password, so the answer does not tell them apart.
BAD_LOGIN = "incorrect email or password"
DISABLED = "this account is disabled"


def register(session: Session, email: str, password: str) -> None:
    """Create a free account for a new email; for a registered one, change nothing.

    The caller answers both alike, so registration does not tell which emails have accounts: the
    password is hashed either way (the time is the same) and nothing is said about the existing
    account, which keeps its password, tier and keys. Its owner learns of the attempt from the
    `user.register_existing` event (there is no mail to send them)."""
    users = UserRepository(session)
    user_id = users.create_unless_taken(email, Tier.FREE, password_hash=hash_password(password))
    if user_id is not None:
        log.info("user.registered", user_id=user_id)
        return
    existing = users.get_by_email(email)
    # The attempted email is not logged (personal data); the account's id is enough to find it.
    log.warning("user.register_existing", user_id=existing.id if existing else None)


def login(session: Session, email: str, password: str) -> User:
    users = UserRepository(session)
    user = users.get_by_email(email.strip())
    # Always one argon2 verification, user or not: see verify_password.
    if not verify_password(user.password_hash if user else None, password) or user is None:
        # The attempted email is not logged: people type their password into that field too.
        log.info("auth.login_failed", user_id=user.id if user else None)
        raise Unauthorized(BAD_LOGIN)
    if not user.is_active:
        raise Unauthorized(DISABLED)
    if user.password_hash and password_needs_rehash(user.password_hash):
        users.update(user, password_hash=hash_password(password))
    log.info("auth.logged_in", user_id=user.id)
    return user


def change_password(session: Session, user: User, current: str, new: str) -> None:
    """Set a new password and revoke every token issued before (API keys are kept)."""
    if not verify_password(user.password_hash, current):
        raise Forbidden("the current password is incorrect")
    UserRepository(session).set_password(user, hash_password(new))
    log.info("auth.password_changed", user_id=user.id)


def create_api_key(session: Session, user: User, name: str) -> tuple[ApiKey, str]:
    """The stored key and its plaintext, which exists only in this response."""
    key = new_api_key()
    row = ApiKeyRepository(session).add_key(user, key, name)
    log.info("api_key.created", user_id=user.id, key_id=row.id, prefix=row.prefix)
    return row, key.plaintext


def revoke_api_key(session: Session, user: User, key_id: str) -> None:
    keys = ApiKeyRepository(session)
    key = keys.get_active_for_user(key_id, user.id)
    if key is None:  # someone else's key is as absent as a made-up id
        raise NotFound(f"no API key {key_id}")
    keys.revoke(key, utcnow())
    log.info("api_key.revoked", user_id=user.id, key_id=key.id)


def update_user(
    session: Session, admin: User, user_id: str, tier: Tier | None, is_active: bool | None
) -> User:
    users = UserRepository(session)
    user = users.get(user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    if is_active is False and user.id == admin.id:
        raise Conflict("an admin cannot disable their own account")
    changes = {name: value for name, value in (("tier", tier), ("is_active", is_active)) if value is not None}
    users.update(user, **changes)
    log.info("user.updated", by=admin.id, user_id=user.id, **{k: str(v) for k, v in changes.items()})
    return user


# --- bearer credentials --------------------------------------------------------------------------


def user_for_bearer(session: Session, tokens: TokenCodec, credential: str) -> tuple[User, str | None]:
    """The user an `Authorization: Bearer` credential (access token or API key) stands for, and the
    id of the API key whose `last_used_at` is due a refresh (None for a token or a fresh key)."""
    if is_token(credential):
        return user_for_token(session, tokens, credential), None
    key, user = key_and_user(session, credential)
    return user, key.id if key_use_is_stale(key) else None


def is_token(credential: str) -> bool:
    # Our keys start with `vbt_`; a JWT is three dot-separated parts. Anything else is still tried
    # as an API key: the operator's VERBATIM_BOOTSTRAP_API_KEY may be any string of 24+ characters.
    return not credential.startswith(f"{KEY_SCHEME}_") and credential.count(".") == 2


def user_for_token(session: Session, tokens: TokenCodec, token: str, audience: str | None = None) -> User:
    claims = tokens.decode(token, audience=audience)
    user = UserRepository(session).get(claims.user_id)
    # A deleted user, or a token from before the last password change.
    if user is None or user.token_version != claims.version:
        raise Unauthorized("invalid or expired token")
    return _active(user)


def key_and_user(session: Session, plaintext: str) -> tuple[ApiKey, User]:
    found = ApiKeyRepository(session).key_and_user(plaintext)
    if found is None:
        raise Unauthorized()
    return found[0], _active(found[1])


def key_use_is_stale(key: ApiKey) -> bool:
    return key.last_used_at is None or key.last_used_at < utcnow() - KEY_USE_RESOLUTION


def record_key_use(session: Session, key_id: str) -> None:
    """Runs after the request committed, in a transaction of its own: a write inside the request's
    transaction would hold a lock for as long as, say, an upload streams in."""
    now = utcnow()
    try:
        ApiKeyRepository(session).touch(key_id, now, stale_before=now - KEY_USE_RESOLUTION)
        session.commit()
    except SQLAlchemyError as exc:  # bookkeeping: never worth failing the request over
        session.rollback()
        log.warning("api_key.touch_failed", key_id=key_id, error=str(exc))
    finally:
        session.close()


def _active(user: User) -> User:
    if not user.is_active:
        raise Unauthorized(DISABLED)
    return user
