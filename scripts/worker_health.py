"""Healthcheck of a worker container: `python -m scripts.worker_health` exits 0 while a worker
process of this host is alive, 1 otherwise.

Alive means what the fleet's reconciler means by it: the worker is registered in RQ and its
`verbatim:worker-alive:<name>` key, refreshed every few seconds by a background thread even while
a long chunk runs, has not expired (see worker/fleet.py). Worker names are
`verbatim-<hostname>-<pid>`, and a container's hostname is its own, so the check finds this
container's worker among the registered ones without scanning Redis. Redis unreachable counts as
unhealthy: such a worker can take no work.
"""

import socket
import sys

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from core.config import get_settings
from core.queues import ALIVE_KEY

TIMEOUT_SECONDS = 3


def alive_here(redis: Redis, hostname: str) -> list[str]:
    """Names of the registered workers of `hostname` whose alive key is fresh."""
    names = [key.removeprefix(Worker.redis_worker_namespace_prefix) for key in Worker.all_keys(redis)]
    mine = [name for name in names if name.startswith(f"verbatim-{hostname}-")]
    return [name for name in mine if redis.exists(ALIVE_KEY.format(name))]


def main() -> int:
    settings = get_settings()
    if not settings.redis_url:
        print("unhealthy: REDIS_URL is not set")
        return 1
    redis = Redis.from_url(settings.redis_url, socket_timeout=TIMEOUT_SECONDS)
    try:
        alive = alive_here(redis, socket.gethostname())
    except RedisError as exc:
        print(f"unhealthy: Redis: {exc}")
        return 1
    if not alive:
        print(f"unhealthy: no live worker of {socket.gethostname()} is registered")
        return 1
    print(f"healthy: {', '.join(alive)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
