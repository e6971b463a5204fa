"""How long work has been waiting in each queue, read from Redis for `/health` and `/metrics`."""

from datetime import UTC, datetime

from rq.job import Job
from rq.utils import utcparse

from core.queues import QueueManager

# Tasks looked at from the head of each queue. The head is normally the oldest task, but a merge
# (and a recovered task) is put at the front when it is released: looking a little deeper finds
# the oldest task behind a few of them, in two round trips whatever the queue length.
PEEK = 10


def oldest_queued_seconds(manager: QueueManager, now: datetime | None = None) -> dict[str, float | None]:
    """Per queue name: seconds since the longest-waiting task near its head was enqueued, or None
    when the queue is empty."""
    now = now or datetime.now(UTC)
    queues = manager.ordered()
    heads = manager.redis.pipeline(transaction=False)
    for queue in queues:
        heads.lrange(queue.key, 0, PEEK - 1)
    ids_per_queue: list[list[bytes]] = heads.execute()
    stamps = manager.redis.pipeline(transaction=False)
    for ids in ids_per_queue:
        for rq_id in ids:
            stamps.hget(Job.key_for(rq_id.decode()), "enqueued_at")
    found: list[bytes | None] = stamps.execute()
    ages: dict[str, float | None] = {}
    position = 0
    for queue, ids in zip(queues, ids_per_queue, strict=True):
        enqueued = [utcparse(s.decode()) for s in found[position : position + len(ids)] if s]
        position += len(ids)
        ages[queue.name] = max(0.0, (now - min(enqueued)).total_seconds()) if enqueued else None
    return ages
