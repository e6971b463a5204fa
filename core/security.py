"""Credentials at rest: API keys (`vbt_<prefix>_<secret>`) and passwords.

API keys: only a SHA-256 of the whole key is stored.

A SHA-256 (not a slow password hash) is right here because the secret is 256 random bits: there is
nothing to brute-force, and a fast hash keeps per-request authentication cheap. Keys are looked up by
that digest, so the secret itself is never compared byte by byte.
"""

import hashlib
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

KEY_SCHEME = "vbt"


@dataclass(frozen=True)
class NewApiKey:
    plaintext: str
    prefix: str
    digest: str


def hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def key_prefix(plaintext: str) -> str | None:
    """The public part of a key, or None if it is not shaped like one of ours."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or not parts[1] or not parts[2]:
        return None
    return parts[1]


def new_api_key(plaintext: str | None = None) -> NewApiKey:
    """A fresh key, or the given one (the operator's bootstrap key) in our stored form."""
    if plaintext is None:
        plaintext = f"{KEY_SCHEME}_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    prefix = key_prefix(plaintext) or plaintext[:8]
    return NewApiKey(plaintext=plaintext, prefix=prefix, digest=hash_api_key(plaintext))


# --- passwords -----------------------------------------------------------------------------------
# argon2id with argon2-cffi's defaults (RFC 9106's second recommended profile: 64 MiB, 3 passes).
# Unlike an API key, a password is guessable, so its hash must be slow and memory-hard.
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-time check. With no hash (unknown email, or a user without a password) it still
    spends one full verification, so the response time does not tell which emails exist."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """True once the hashing parameters were raised: the login that proves the password upgrades it."""
    return _hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))
