"""The worker pool of the launchers: keeps its count, and does not restart a failing worker in a
tight loop."""

import os
import time

from scripts.processes import WorkerPool


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
