"""`/health/live`, `/health/ready`, `/health` and `/metrics`, on both stacks, after real jobs."""

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import SimpleWorker
from sqlalchemy import func, select

from api.app import create_app
from core.db import session_scope
from core.enums import ChunkStatus, JobStatus, Priority, Tier
from repositories.models import Chunk, Job
from tests.conftest import auth, create_user, speech
from worker.context import engine_plan

QUEUES = {"stt_jobs_high": "high", "stt_jobs": "normal", "stt_jobs_low": "low"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def submit(client: TestClient, key: str, recording: str) -> str:
    path = speech(recording)
    response = client.post("/v1/jobs", headers=auth(key), files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def scrape(client: TestClient) -> tuple[Samples, set[str]]:
    """Every sample of `/metrics` by (name, labels), and the family names."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(response.text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return samples, {f.name for f in families}


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def queue(samples: Samples, name: str, queue_name: str) -> float:
    return sample(samples, name, queue=queue_name, priority=QUEUES[queue_name])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def app_with(settings: Any, redis: Redis, **overrides: Any) -> Iterator[TestClient]:
    """A second API process on the same stores, with some of its settings changed."""
    with TestClient(create_app(settings.model_copy(update=overrides), redis)) as other:
        yield other


# --- health -----------------------------------------------------------------------------------


def test_live_and_ready(client):
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok", "storage": "ok"}


def test_health_reports_the_stores_and_each_queue(client, sessions):
    _, key = create_user(sessions, Tier.PRO)
    submit(client, key, "jfk/jfk.flac")
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("status", "database", "redis", "storage", "workers", "jobs_count")} == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "storage": "ok",
        "workers": 0,
        "jobs_count": 1,
    }
    queues = {q["name"]: q for q in body["queues"]}
    assert list(queues) == list(QUEUES)
    normal = queues["stt_jobs"]
    assert (normal["queued"], normal["started"], normal["workers"]) == (1, 0, 0)
    assert 0 < normal["oldest_queued_seconds"] < 60
    assert queues["stt_jobs_high"]["queued"] == 0
    assert queues["stt_jobs_high"]["oldest_queued_seconds"] is None


def test_health_lists_what_each_worker_transcribes_with(client, worker_ctx, redis):
    def start(name: str, engine: dict[str, Any] | None) -> None:
        SimpleWorker(worker_ctx.queues.ordered(), connection=redis, name=name).register_birth()
        if engine is not None:
            worker_ctx.queues.publish_engine(name, engine)

    start("cpu-1", worker_ctx.engine())  # what `worker.main` publishes at start
    gpu = {
        "backend": "local",
        "batch_size": 32,
        "model": "large-v3",
        "device": "cuda",
        "device_index": [0, 1],
        "compute_type": "float16",
        "threads": 1,
    }
    start("gpu-1", gpu)
    start("hosted-1", {"backend": "assemblyai", "batch_size": 1})
    start("starting-1", None)  # registered, engine not published yet
    worker_ctx.queues.publish_engine("gone-1", gpu)  # published, but no longer registered

    engines = {e["worker"]: e for e in client.get("/health").json()["engines"]}

    assert list(engines) == ["cpu-1", "gpu-1", "hosted-1"]
    plan = engine_plan(worker_ctx.settings)
    assert engines["cpu-1"] == {
        "worker": "cpu-1",
        "backend": "local",
        "batch_size": worker_ctx.batch_size(),
        "model": Path(worker_ctx.settings.whisper_model).name,
        "device": plan.device,
        "device_index": list(plan.device_index),
        "compute_type": plan.compute_type,
        "threads": plan.threads,
    }
    assert engines["cpu-1"]["batch_size"] == plan.batch_size >= 1
    assert engines["gpu-1"] == {"worker": "gpu-1", **gpu}
    assert engines["hosted-1"] == {
        "worker": "hosted-1",
        "backend": "assemblyai",
        "batch_size": 1,
        "model": None,
        "device": None,
        "device_index": None,
        "compute_type": None,
        "threads": None,
    }


def test_database_down(client, settings, redis, stack, tmp_path):
    if stack == "embedded":  # a SQLite file in a folder that cannot exist (a file is in its place)
        (tmp_path / "taken").write_text("not a folder")
        url = f"sqlite:///{tmp_path / 'taken' / 'verbatim.db'}"
    else:
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{closed_port()}/test"
    with app_with(settings, redis, database_url=url) as down:
        assert down.get("/health/live").status_code == 200
        ready = down.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "not_ready",
            "database": "unavailable",
            "redis": "ok",
            "storage": "ok",
        }
        health = down.get("/health")
        assert health.status_code == 503
        assert health.json()["database"] == "unavailable" and health.json()["jobs_count"] is None
        assert len(health.json()["queues"]) == 3
        samples, names = scrape(down)
        assert sample(samples, "verbatim_dependency_up", dependency="database") == 0
        assert sample(samples, "verbatim_dependency_up", dependency="redis") == 1
        assert "verbatim_jobs" not in names and "verbatim_queue_depth" in names
    assert client.get("/health/ready").status_code == 200


def test_redis_down(client, settings):
    # No retries: each refused connection answers at once, not after redis-py's backoff (seconds).
    dead = Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))
    with app_with(settings, dead) as down:
        assert down.get("/health/live").status_code == 200
        ready = down.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "not_ready",
            "database": "ok",
            "redis": "unavailable",
            "storage": "ok",
        }
        health = down.get("/health").json()
        assert (health["redis"], health["workers"], health["queues"], health["engines"]) == (
            "unavailable",
            None,
            [],
            [],
        )
        samples, names = scrape(down)
        assert sample(samples, "verbatim_dependency_up", dependency="redis") == 0
        assert "verbatim_queue_depth" not in names and "verbatim_jobs" in names


def test_storage_not_writable(client, settings):
    # A file where the storage folder should be: nothing can be written under it, even by root.
    shutil.rmtree(settings.storage_dir)
    settings.storage_dir.write_bytes(b"")
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json() == {"status": "not_ready", "database": "ok", "redis": "ok", "storage": "unavailable"}
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["storage"] == "unavailable"
    samples, _ = scrape(client)
    assert sample(samples, "verbatim_dependency_up", dependency="storage") == 0


# --- metrics ----------------------------------------------------------------------------------


def sql_figures(sessions) -> tuple[dict[tuple[str, str], int], list[Chunk]]:
    with session_scope(sessions) as session:
        by_status = session.execute(
            select(Job.status, Job.priority, func.count()).group_by(Job.status, Job.priority)
        )
        counts = {(s.value, p.value): int(n) for s, p, n in by_status}
        chunks = list(session.execute(select(Chunk).where(Chunk.status == ChunkStatus.COMPLETED)).scalars())
        return counts, chunks


def check_histogram(samples: Samples, name: str, **labels: str) -> tuple[float, float]:
    """Buckets rise with `le` and end at the count. Returns (count, sum)."""
    buckets = sorted(
        (float(dict(key)["le"]), value)
        for (n, key), value in samples.items()
        if n == f"{name}_bucket" and {k: v for k, v in key if k != "le"} == labels
    )
    assert buckets and buckets[-1][0] == float("inf")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    count = sample(samples, f"{name}_count", **labels)
    assert buckets[-1][1] == count
    return count, sample(samples, f"{name}_sum", **labels)


def test_metrics_follow_real_jobs(client, sessions, run_worker):
    pro_id, pro = create_user(sessions, Tier.PRO, email="metrics.pro@example.com")
    _, enterprise = create_user(sessions, Tier.ENTERPRISE)
    jobs = [submit(client, pro, "jfk/jfk.flac"), submit(client, pro, "fleurs_en/fleurs-en-003.ogg")]
    jobs.append(submit(client, enterprise, "fleurs_en/fleurs-en-001.ogg"))

    before, _ = scrape(client)
    assert [queue(before, "verbatim_queue_depth", q) for q in QUEUES] == [1, 2, 0]
    assert queue(before, "verbatim_queue_oldest_age_seconds", "stt_jobs") > 0
    assert queue(before, "verbatim_queue_oldest_age_seconds", "stt_jobs_high") > 0
    assert queue(before, "verbatim_queue_oldest_age_seconds", "stt_jobs_low") == 0
    assert sample(before, "verbatim_jobs", status="pending", priority="normal") == 2
    assert sample(before, "verbatim_jobs", status="pending", priority="high") == 1
    assert sample(before, "verbatim_workers") == 0
    assert check_histogram(before, "verbatim_chunk_transcribe_seconds") == (0, 0)

    run_worker()
    after, names = scrape(client)
    counts, chunks = sql_figures(sessions)
    assert counts == {("completed", "normal"): 2, ("completed", "high"): 1}
    for status in JobStatus:
        for priority in Priority:
            assert sample(after, "verbatim_jobs", status=status.value, priority=priority.value) == counts.get(
                (status.value, priority.value), 0
            )

    seconds = [float(c.transcribe_seconds) for c in chunks]
    factors = [s / (c.end_seconds - c.start_seconds) for s, c in zip(seconds, chunks, strict=True)]
    count, total = check_histogram(after, "verbatim_chunk_transcribe_seconds")
    assert count == len(chunks) >= 3
    assert total == pytest.approx(sum(seconds))
    rtf_count, rtf_sum = check_histogram(after, "verbatim_chunk_real_time_factor")
    assert rtf_count == len(chunks)
    assert rtf_sum == pytest.approx(sum(factors))
    assert 0 < rtf_sum / rtf_count < 1  # the tiny model is faster than real time on short clips
    assert sample(after, "verbatim_chunk_real_time_factor_bucket", le="1.0") == rtf_count

    for level, expected in (("high", 1), ("normal", 2), ("low", 0)):
        wait_count, wait_sum = check_histogram(after, "verbatim_job_queue_wait_seconds", priority=level)
        latency_count, latency_sum = check_histogram(after, "verbatim_job_latency_seconds", priority=level)
        assert wait_count == latency_count == expected
        assert latency_sum >= wait_sum >= 0
        assert (latency_sum > 0) == (expected > 0)

    for q in QUEUES:
        assert queue(after, "verbatim_queue_depth", q) == 0
        assert queue(after, "verbatim_queue_oldest_age_seconds", q) == 0
        assert queue(after, "verbatim_queue_started_tasks", q) == 0
        assert queue(after, "verbatim_queue_workers", q) == 0
    for dependency in ("database", "redis", "storage"):
        assert sample(after, "verbatim_dependency_up", dependency=dependency) == 1
    assert sample(after, "verbatim_metrics_window_seconds") == 3600
    assert names >= {
        "verbatim_queue_failed_tasks",
        "verbatim_chunk_transcribe_seconds",
        "verbatim_job_latency_seconds",
        "verbatim_workers",
    }

    # Operators scrape it without a key: it must say nothing about who sent what.
    text = client.get("/metrics").text
    for private in ("metrics.pro@example.com", pro_id, "jfk", "fleurs", *jobs):
        assert private not in text


def test_two_api_processes_report_the_same_figures(client, settings, redis, sessions, run_worker):
    _, key = create_user(sessions, Tier.PRO)
    submit(client, key, "jfk/jfk.flac")
    run_worker()
    submit(client, key, "fleurs_en/fleurs-en-003.ogg")  # left queued: the queue figures are not all 0
    with app_with(settings, redis) as other:
        first, second = scrape(client)[0], scrape(other)[0]
    ages = {k for k in first if k[0] == "verbatim_queue_oldest_age_seconds"}
    assert {k: v for k, v in first.items() if k not in ages} == {
        k: v for k, v in second.items() if k not in ages
    }
    for k in ages:  # time passes between the two scrapes
        assert first[k] == pytest.approx(second[k], abs=5)
    assert queue(first, "verbatim_queue_depth", "stt_jobs") == 1
    assert sample(first, "verbatim_chunk_transcribe_seconds_count") == 1
