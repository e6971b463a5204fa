"""API keys: `vbt_<prefix>_<secret>`. Only a SHA-256 of the whole key is stored.

A SHA-256 (not a slow password hash) is right here because the secret is 256 random bits: there is
nothing to brute-force, and a fast hash keeps per-request authentication cheap. Keys are looked up by
that digest, so the secret itself is never compared byte by byte.
"""

import hashlib
import secrets
from dataclasses import dataclass

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
