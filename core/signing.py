"""Signed, expiring, purpose-bound values: the credential inside the URLs the API hands out.

Local storage has no presigned URLs of its own, so `POST /v1/uploads` and `GET /v1/jobs/{id}/download`
give out API URLs that carry one of these instead; whoever holds the URL may use it, once or many
times, until it expires, for that purpose only.

A token is `{payload}.{mac}`: the payload is compact JSON of the claims plus `exp` (Unix seconds),
base64url without padding; the mac is HMAC-SHA256 over the purpose and the payload, also base64url.
The HMAC key is derived from the JWT secret (core/tokens.py), so the two never share a key, and the
purpose is inside the MAC, so a download token cannot stand in for an upload token.
"""

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property

from core.config import Settings
from core.errors import Forbidden
from core.tokens import load_jwt_secret

Claims = dict[str, str | int]

# Tests move the clock by replacing this.
clock = time.time

MAX_TOKEN_LENGTH = 4096
_KEY_CONTEXT = b"verbatim signed URLs v1"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


class Purpose(StrEnum):
    UPLOAD = "upload"
    DOWNLOAD = "download"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, payload: str) -> str:
    message = purpose.encode() + b"\x00" + payload.encode("ascii")
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def derive_key(secret: str) -> bytes:
    """The signing key, separate from the JWT key made from the same secret."""
    return hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()


def sign(key: bytes, purpose: str, claims: Mapping[str, str | int], expires_at: int) -> str:
    if "exp" in claims:
        raise ValueError("`exp` is set from expires_at")
    payload = _b64(json.dumps({**claims, "exp": expires_at}, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_mac(key, purpose, payload)}"


def verify(key: bytes, purpose: str, token: str, now: float | None = None) -> Claims:
    """The claims of a token made by `sign` with this key and purpose, unexpired; `Forbidden` otherwise.

    The MAC is checked (in constant time) before anything of the payload is parsed.
    """
    payload, _, mac = token.partition(".")
    well_formed = len(token) <= MAX_TOKEN_LENGTH and bool(_BASE64URL.match(payload) and _BASE64URL.match(mac))
    if not well_formed or not hmac.compare_digest(mac, _mac(key, purpose, payload)):
        raise Forbidden("invalid link: its signature does not match (ask for a new one)")
    claims: Claims = json.loads(_unb64(payload))
    expires_at = int(claims.pop("exp"))
    if expires_at <= (clock() if now is None else now):
        moment = datetime.fromtimestamp(expires_at, UTC).isoformat()
        raise Forbidden(f"this link expired at {moment}; ask for a new one")
    return claims


class UrlSigner:
    """`sign`/`verify` with the service's key; one per process, the secret loaded on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @cached_property
    def _key(self) -> bytes:
        return derive_key(load_jwt_secret(self._settings))

    def sign(self, purpose: Purpose, claims: Mapping[str, str | int], seconds: int) -> tuple[str, datetime]:
        """A token valid for `seconds` from now, and the moment it expires."""
        expires_at = int(clock()) + seconds
        return sign(self._key, purpose.value, claims, expires_at), datetime.fromtimestamp(expires_at, UTC)

    def verify(self, purpose: Purpose, token: str) -> Claims:
        return verify(self._key, purpose.value, token)


# The routes that serve local storage's signed URLs (api/routers/uploads.py and downloads.py).
UPLOAD_PATH = "/v1/uploads"
DOWNLOAD_PATH = "/v1/downloads"


def upload_claims(key: str, max_bytes: int) -> Claims:
    """What an upload token grants: one object at `key`, at most `max_bytes` long."""
    return {"k": key, "n": max_bytes}


def download_claims(key: str, download_as: str, media_type: str) -> Claims:
    return {"k": key, "name": download_as, "type": media_type}
