"""Fixed-window request counters in Redis, shared by every API process.

One key per (scope, subject) lives for one window: the first hit creates it with the window as its
TTL, every hit increments it, and the TTL left is the `Retry-After`. Redis's own clock sets the
windows, so API processes with skewed clocks still agree.
"""

import hashlib

from redis import Redis
from redis.exceptions import RedisError

from core.errors import ServiceUnavailable, TooManyRequests
from core.logging import get_logger

log = get_logger(__name__)

KEY_PREFIX = "verbatim:ratelimit"


class RateLimiter:
    def __init__(self, redis: Redis, window_seconds: int) -> None:
        self._redis = redis
        self._window = window_seconds

    def hit(self, scope: str, subject: str, limit: int) -> None:
        """Count one request by `subject` (an IP, an email) against `scope`; past the limit, 429."""
        key = f"{KEY_PREFIX}:{scope}:{_digest(subject)}"
        try:
            count, ttl = self._count(key)
        except RedisError as exc:
            # Fail closed: without the counter, login would be open to unlimited guessing.
            log.error("ratelimit.unavailable", scope=scope, error=str(exc))
            raise ServiceUnavailable("the service is unavailable, try again shortly") from exc
        if count > limit:
            retry_after = ttl if ttl > 0 else self._window
            log.warning("ratelimit.exceeded", scope=scope, limit=limit, retry_after=retry_after)
            raise TooManyRequests(f"too many requests, retry in {retry_after} s", retry_after=retry_after)

    def _count(self, key: str) -> tuple[int, int]:
        # One MULTI/EXEC: the key never exists without its expiry (SET NX EX, not INCR then EXPIRE,
        # which would leave an immortal counter if the process died in between).
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(key, 0, ex=self._window, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = pipe.execute()
        return int(count), int(ttl)


def _digest(subject: str) -> str:
    # Emails and IPs are personal data: Redis (and the RQ dashboard that browses it) sees a hash.
    return hashlib.sha256(subject.strip().lower().encode()).hexdigest()[:32]
