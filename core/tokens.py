"""Access tokens: short-lived HS256 JWTs, and the secret that signs them.

Every JWT is made and read here, so the algorithm and the required claims are pinned in one place.
A token carries the user's id (`sub`) and token version (`ver`); the caller checks `ver` against the
user's row, which is how a password change revokes every token issued before it. A token issued for
an audience (the dashboard's session cookie) is refused as a bearer token, and a bearer token is
refused where an audience is expected, so neither can stand in for the other.
"""

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

import jwt

from core.config import MIN_JWT_SECRET_LENGTH, Settings
from core.errors import Unauthorized
from core.files import create_private_file, private_dir
from core.logging import get_logger

log = get_logger(__name__)

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "ver"]
SECRET_FILE = "jwt_secret"  # noqa: S105 (a file name)


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    version: int


class TokenCodec:
    """Issues and checks access tokens. The secret is loaded (or made) on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @cached_property
    def _secret(self) -> str:
        return load_jwt_secret(self._settings)

    def issue(
        self, user_id: str, version: int, now: datetime | None = None, *, audience: str | None = None
    ) -> AccessToken:
        now = now or datetime.now(UTC)
        lifetime = timedelta(minutes=self._settings.access_token_minutes)
        claims: dict[str, object] = {"sub": user_id, "ver": version, "iat": now, "exp": now + lifetime}
        if audience is not None:
            claims["aud"] = audience
        return AccessToken(
            jwt.encode(claims, self._secret, algorithm=ALGORITHM), int(lifetime.total_seconds())
        )

    def decode(self, token: str, *, audience: str | None = None) -> TokenClaims:
        """The claims of a valid token; `Unauthorized` for anything else, whatever the reason.
        Without `audience`, a token that names one is refused; with it, the token must name it."""
        required = [*REQUIRED_CLAIMS, "aud"] if audience is not None else REQUIRED_CLAIMS
        try:
            # The algorithm list is pinned: the token's own header never chooses how it is checked.
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], audience=audience, options={"require": required}
            )
        except jwt.PyJWTError as exc:
            log.debug("token.rejected", reason=type(exc).__name__)
            raise Unauthorized("invalid or expired token") from None
        user_id, version = claims["sub"], claims["ver"]
        if not isinstance(user_id, str) or type(version) is not int:
            raise Unauthorized("invalid or expired token")
        return TokenClaims(user_id=user_id, version=version)


def load_jwt_secret(settings: Settings) -> str:
    """The configured secret, or (development and tests only) one kept in the data dir."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if settings.environment == "production":  # Settings refuses this; never fall back silently.
        raise RuntimeError("VERBATIM_JWT_SECRET is required in production")
    return _shared_secret_file(settings.data_dir / SECRET_FILE)


def _shared_secret_file(path: Path) -> str:
    # Several API processes may start at once: each writes a candidate to its own file and links
    # it into place. link() fails if the name exists, so exactly one candidate wins, and nobody
    # can read a half-written secret. Every process then uses the file's content.
    if not path.exists():
        private_dir(path.parent)
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        with os.fdopen(create_private_file(candidate), "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(candidate, path)
            log.info("token.secret_created", path=str(path))
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    secret = path.read_text().strip()
    if len(secret) < MIN_JWT_SECRET_LENGTH:
        raise RuntimeError(f"{path} holds fewer than {MIN_JWT_SECRET_LENGTH} characters")
    return secret
