"""The launchers' processes: the worker pool keeps its count and does not restart a failing worker
in a tight loop; the embedded Redis takes only clients that know its password."""

import os
import stat
import time
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError

from scripts.processes import WorkerPool, start_redis, terminate


def test_the_pool_keeps_its_count_and_pauses_when_workers_die_at_start() -> None:
    pool = WorkerPool(env=dict(os.environ), count=2, command=["-c", "import sys; sys.exit(3)"])
    pool.fill()
    assert len(pool.processes) == 2
    for process in pool.processes:
        process.wait(timeout=30)

    exited = pool.reap()
    reaped = time.monotonic()
    assert [p.returncode for p in exited] == [3, 3] and pool.processes == []
    pool.fill()
    assert pool.processes == [], "restarted at once, although the workers died at start"

    while not pool.processes and time.monotonic() - reaped < 10:
        pool.fill()
        time.sleep(0.05)
    # The first pause is 1 s; it doubles while workers keep dying at start.
    assert len(pool.processes) == 2 and time.monotonic() - reaped >= 1.0
    pool.stop(grace=5)


def test_stop_ends_every_worker() -> None:
    pool = WorkerPool(env=dict(os.environ), count=3, command=["-c", "import time; time.sleep(60)"])
    pool.fill()
    pool.stop(grace=5)
    assert all(p.returncode is not None for p in pool.processes)


def test_the_embedded_redis_refuses_a_client_without_its_password(tmp_path: Path) -> None:
    server, url = start_redis(tmp_path)  # as scripts/stack.py starts it
    try:
        with Redis.from_url(url) as trusted:
            assert trusted.ping()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with (
            Redis(host="127.0.0.1", port=port) as stranger,
            pytest.raises((AuthenticationError, ResponseError)),
        ):
            stranger.set("rq:job:x", "import os")
        # The password is not on the command line, where `ps` would show it to every account.
        password = url.split("://:", 1)[1].split("@", 1)[0]
        assert password not in " ".join(str(arg) for arg in server.args)
    finally:
        terminate([server], grace=10)
    assert stat.S_IMODE((tmp_path / "redis").stat().st_mode) == 0o700
