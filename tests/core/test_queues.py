"""core.queues: what each worker transcribes with, and the lanes a job's chunks are released in."""

from rq import Queue, SimpleWorker
from rq.job import JobStatus as RQStatus

from core.config import Settings
from core.enums import Priority
from core.queues import ALIVE_TTL_SECONDS, ENGINE_KEY, QueueManager, chunk_task_id, merge_task_id


def start_worker(queues: QueueManager, name: str, serves: list[Queue], batch_size: int | None) -> None:
    """A registered worker that published its engine (unless `batch_size` is None)."""
    SimpleWorker(serves, connection=queues.redis, name=name).register_birth()
    if batch_size is not None:
        queues.publish_engine(name, {"backend": "local", "batch_size": batch_size})


def test_without_workers_a_job_has_the_configured_lanes(settings: Settings, redis) -> None:
    queues = QueueManager(redis, settings.model_copy(update={"chunk_lanes": 3}))

    assert queues.lanes(queues.queues[Priority.NORMAL]) == 3


def test_lanes_are_the_batches_of_the_workers_serving_the_queue(settings: Settings, redis) -> None:
    queues = QueueManager(redis, settings)
    high, normal, low = queues.ordered()
    start_worker(queues, "every-queue", [high, normal, low], batch_size=4)
    start_worker(queues, "gpu", [normal], batch_size=16)
    start_worker(queues, "high-only", [high], batch_size=8)
    start_worker(queues, "starting", [normal], batch_size=None)  # not published yet: one chunk

    assert [queues.lanes(q) for q in (high, normal, low)] == [12, 21, 4]
    # The configured minimum still holds where the fleet is smaller.
    assert QueueManager(redis, settings.model_copy(update={"chunk_lanes": 30})).lanes(normal) == 30


def test_engines_are_those_of_registered_workers_and_expire_with_them(settings: Settings, redis) -> None:
    queues = QueueManager(redis, settings)
    start_worker(queues, "alive", queues.ordered(), batch_size=4)
    queues.publish_engine("unregistered", {"backend": "local", "batch_size": 16})

    assert queues.engines() == {"alive": {"backend": "local", "batch_size": 4}}
    assert queues.batch_size("alive") == 4 and queues.batch_size("unregistered") == 16
    assert queues.batch_size("never-seen") == 1
    assert 0 < redis.ttl(ENGINE_KEY.format("alive")) <= ALIVE_TTL_SECONDS


def test_a_heartbeat_refreshes_the_engine_with_the_alive_key(settings: Settings, redis) -> None:
    queues = QueueManager(redis, settings)
    start_worker(queues, "w", queues.ordered(), batch_size=None)

    queues.mark_alive("w", {"backend": "local", "batch_size": 2})

    assert queues.engines() == {"w": {"backend": "local", "batch_size": 2}}


def test_a_chain_queues_one_chunk_per_lane_and_the_merge_after_the_last_of_each(
    settings: Settings, redis
) -> None:
    queues = QueueManager(redis, settings)  # two lanes
    queues.enqueue_chunk("job", Priority.LOW, 2, after=None)  # queued by a `prepare` that died
    chain = queues.lane_chain("job", Priority.LOW)
    for index in range(5):
        chain.add(index, enqueue=index != 2)  # chunk 2's task is in Redis: not queued twice
    chain.finish()

    low = queues.queues[Priority.LOW]
    assert low.get_job_ids() == [chunk_task_id("job", i) for i in (2, 0, 1)]
    fetch = low.fetch_job
    assert fetch(chunk_task_id("job", 3)).dependency_ids == [chunk_task_id("job", 1)]
    # Chunk 4 follows chunk 2 in its lane even though this chain did not queue chunk 2.
    assert fetch(chunk_task_id("job", 4)).dependency_ids == [chunk_task_id("job", 2)]
    merge = fetch(merge_task_id("job"))
    assert merge.get_status() == RQStatus.DEFERRED
    assert sorted(merge.dependency_ids) == [chunk_task_id("job", 3), chunk_task_id("job", 4)]


def test_a_chain_without_chunks_queues_the_merge_at_once_at_the_front(settings: Settings, redis) -> None:
    queues = QueueManager(redis, settings)
    queues.enqueue_prepare("other", Priority.NORMAL)

    queues.lane_chain("silent", Priority.NORMAL).finish()  # a file without speech

    assert queues.queues[Priority.NORMAL].get_job_ids() == [merge_task_id("silent"), "prepare-other"]
