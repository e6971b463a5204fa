"""The worker container's healthcheck finds this host's worker by name and trusts its alive key."""

import fakeredis
from rq import Queue, SimpleWorker

from core.queues import ALIVE_KEY
from scripts.worker_health import alive_here


def register(redis: fakeredis.FakeRedis, name: str) -> None:
    SimpleWorker([Queue("stt_jobs", connection=redis)], connection=redis, name=name).register_birth()


def test_a_registered_worker_with_a_fresh_alive_key_is_healthy() -> None:
    redis = fakeredis.FakeRedis()
    register(redis, "verbatim-c0ffee-7")
    redis.set(ALIVE_KEY.format("verbatim-c0ffee-7"), "1", ex=15)
    assert alive_here(redis, "c0ffee") == ["verbatim-c0ffee-7"]


def test_a_worker_whose_alive_key_expired_is_not() -> None:
    redis = fakeredis.FakeRedis()
    register(redis, "verbatim-c0ffee-7")
    assert alive_here(redis, "c0ffee") == []


def test_only_this_hosts_workers_count() -> None:
    redis = fakeredis.FakeRedis()
    for name in ("verbatim-other-7", "verbatim-c0ffee2-7"):
        register(redis, name)
        redis.set(ALIVE_KEY.format(name), "1", ex=15)
    assert alive_here(redis, "c0ffee") == []
