"""`/metrics`: the service's figures, computed at scrape time from SQL and Redis.

Workers run on many machines, so nothing is scraped from them: SQL (jobs, chunks) and Redis
(queues, workers) hold every figure, and each API process computes the same numbers from them.
Hence any number of API processes agree, with no multiprocess directory. Labels are only queue,
priority, status and dependency names: no user, job, file or e-mail ever appears.
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api import probes
from core.config import Settings
from core.logging import get_logger
from core.queue_metrics import oldest_queued_seconds
from core.queues import QueueManager
from repositories.metrics import Histogram, MetricsRepository
from storage.base import Storage

T = TypeVar("T")
log = get_logger(__name__)


class ServiceCollector(Collector):
    def __init__(
        self, sessions: sessionmaker[Session], queues: QueueManager, storage: Storage, window: timedelta
    ) -> None:
        self._sessions, self._queues, self._storage, self._window = sessions, queues, storage, window

    def collect(self) -> Iterable[Metric]:
        now = datetime.now(UTC)
        # A store that is down leaves its families out (Prometheus marks them stale) and shows in
        # verbatim_dependency_up; the other families are still served.
        sql = _attempt("database", lambda: self._sql_families(now - self._window), SQLAlchemyError)
        redis = _attempt("redis", lambda: self._queue_families(now), RedisError)
        up = GaugeMetricFamily(
            "verbatim_dependency_up", "1 if the store answered this scrape.", labels=["dependency"]
        )
        up.add_metric(["database"], float(sql is not None))
        up.add_metric(["redis"], float(redis is not None))
        up.add_metric(["storage"], float(probes.storage_up(self._storage)))
        window = GaugeMetricFamily(
            "verbatim_metrics_window_seconds",
            "The trailing window the duration histograms cover.",
            value=self._window.total_seconds(),
        )
        return [up, window, *(sql or []), *(redis or [])]

    def _sql_families(self, since: datetime) -> list[Metric]:
        with self._sessions() as session:
            figures = MetricsRepository(session)
            jobs = GaugeMetricFamily("verbatim_jobs", "Jobs in SQL.", labels=["status", "priority"])
            for (status, priority), count in figures.jobs_by_status().items():
                jobs.add_metric([status.value, priority.value], count)
            return [
                jobs,
                _histogram(
                    "verbatim_chunk_transcribe_seconds",
                    "Model time per completed chunk.",
                    {(): figures.chunk_transcribe_seconds(since)},
                ),
                _histogram(
                    "verbatim_chunk_real_time_factor",
                    "Model time / audio time per completed chunk.",
                    {(): figures.chunk_real_time_factor(since)},
                ),
                _histogram(
                    "verbatim_job_queue_wait_seconds",
                    "From upload to the start of the work (the chunk plan recorded), per priority.",
                    {(p.value,): h for p, h in figures.queue_wait_seconds(since).items()},
                    labels=["priority"],
                ),
                _histogram(
                    "verbatim_job_latency_seconds",
                    "From upload to the completed transcript, per priority.",
                    {(p.value,): h for p, h in figures.job_latency_seconds(since).items()},
                    labels=["priority"],
                ),
            ]

    def _queue_families(self, now: datetime) -> list[Metric]:
        stats = self._queues.stats()
        ages = oldest_queued_seconds(self._queues, now)
        labels = ["queue", "priority"]
        depth = GaugeMetricFamily("verbatim_queue_depth", "Tasks waiting in the queue.", labels=labels)
        started = GaugeMetricFamily("verbatim_queue_started_tasks", "Tasks running.", labels=labels)
        failed = GaugeMetricFamily(
            "verbatim_queue_failed_tasks", "Tasks in RQ's failed registry (kept 7 days).", labels=labels
        )
        oldest = GaugeMetricFamily(
            "verbatim_queue_oldest_age_seconds",
            "How long the longest-waiting queued task has waited (0 when the queue is empty).",
            labels=labels,
        )
        serving = GaugeMetricFamily("verbatim_queue_workers", "Workers serving the queue.", labels=labels)
        for s in stats:
            values = [s.name, s.priority.value]
            depth.add_metric(values, s.queued)
            started.add_metric(values, s.started)
            failed.add_metric(values, s.failed)
            oldest.add_metric(values, ages.get(s.name) or 0.0)
            serving.add_metric(values, s.workers)
        workers = GaugeMetricFamily(
            "verbatim_workers", "Worker processes registered in Redis.", value=self._queues.worker_count()
        )
        return [depth, started, failed, oldest, serving, workers]


def _attempt(source: str, compute: Callable[[], T], errors: type[Exception]) -> T | None:
    try:
        return compute()
    except errors as exc:
        log.warning("metrics.source_down", dependency=source, error=type(exc).__name__)
        return None


def _histogram(
    name: str, documentation: str, series: dict[tuple[str, ...], Histogram], labels: Sequence[str] = ()
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, h in series.items():
        buckets = [(str(b), float(c)) for b, c in zip(h.bounds, h.cumulative, strict=True)]
        family.add_metric(list(values), [*buckets, ("+Inf", float(h.count))], h.total)
    return family


def metrics_registry(
    sessions: sessionmaker[Session], queues: QueueManager, storage: Storage, settings: Settings
) -> CollectorRegistry:
    """A registry of this app's own, not the global one: two apps in one process (tests) stay
    apart, and the API process's own Python metrics are left out (they differ per process)."""
    registry = CollectorRegistry()
    window = timedelta(minutes=settings.metrics_window_minutes)
    registry.register(ServiceCollector(sessions, queues, storage, window))
    return registry
