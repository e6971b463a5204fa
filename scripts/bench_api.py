"""The API under load: the reads a busy client and an operator make, on a long job history.

    python -m scripts.bench_api [--jobs 100000] [--connections 32] [--seconds 10] [--processes N]

Seeds a fresh PostgreSQL database (`--database-url` names the server; a new database is made on it
and dropped after) with one user owning `--jobs` jobs, inserted by one SQL statement, then VACUUM
ANALYZE as autovacuum would. Starts the API as a real process, as `scripts/run` does
(`scripts.processes.api_command`, `--processes` uvicorn workers, by default VERBATIM_API_PROCESSES:
one per core), with an embedded Redis and local storage. Then drives each route in turn from
`--connections` keep-alive connections for `--seconds` (a closed loop, as `wrk -c`), and prints per
route the requests per second, the median and 99th-percentile latency, and the errors (a refused or
broken connection, or any status but 200).

The load generator shares the machine with the API and PostgreSQL: it is asyncio over raw sockets,
so it costs a fraction of what it measures.
"""

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.config import Settings
from core.db import make_engine, make_session_factory, session_scope
from core.enums import Tier
from core.security import new_api_key
from repositories.users import ApiKeyRepository, UserRepository
from scripts.processes import (
    api_command,
    free_port,
    inherited_env,
    spawn,
    start_redis,
    terminate,
    wait_for,
)
from scripts.stack import migrate

DEFAULT_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
# Transcripts are drawn from this many made-up words, so one word is in about 1 % of them (the
# search's target: a term that finds a handful of pages among many thousand jobs).
VOCABULARY = 2500  # at most 14**3, the three-syllable words
WORDS_PER_TRANSCRIPT = 30
SEARCH_WORD_INDEX = 1234


@dataclass(frozen=True)
class Seeded:
    user_id: str
    api_key: str
    job_ids: list[str]
    search_word: str


@dataclass(frozen=True)
class RouteResult:
    route: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        """The p-th percentile latency in ms (nearest rank); 0 with no request answered."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def word(n: int) -> str:
    """The n-th made-up word: syllables, so substrings of one rarely spell another."""
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "vo", "ri", "pe", "du", "ga", "zo", "bi", "fe"]
    letters = []
    for _ in range(3):
        n, digit = divmod(n, len(syllables))
        letters.append(syllables[digit])
    return "".join(letters) + "x"


def vocabulary() -> list[str]:
    return [word(n) for n in range(VOCABULARY)]


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of `server_url`, dropped afterwards; yields its URL."""
    name = f"verbatim_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# One statement: every job completed, a minute apart, each with a transcript of made-up words.
# The ids are md5-based uuids of the row number, so a run's data is the same every time.
SEED_JOBS = text("""
INSERT INTO jobs (id, user_id, status, priority, language, detected_language, filename, content_type,
                  size_bytes, source_key, mode, audio_duration_seconds, chunks_total, chunks_completed,
                  transcript_text, created_at, started_at, completed_at)
SELECT md5(:salt || i::text)::uuid::text, :user_id, 'completed', 'normal', 'en', 'en',
       'meeting-' || i || '.wav', 'audio/wav', 1000000 + i, 'jobs/' || i || '/source', 'mono',
       60.0 + i % 600, 2, 2,
       (SELECT string_agg((:words ::text[])[1 + (hashint4(i * 64 + w) & 2147483647) % :vocabulary], ' ')
          FROM generate_series(1, :per_transcript) AS w),
       now() - make_interval(mins => i), now() - make_interval(mins => i) + interval '5 seconds',
       now() - make_interval(mins => i) + interval '40 seconds'
FROM generate_series(1, :jobs) AS i
""")


def seed(url: str, jobs: int) -> Seeded:
    """Migrate the database at `url`, then one user with an API key and `jobs` jobs."""
    migrate(Settings(database_url=url))
    engine = make_engine(url)
    key = new_api_key()
    with session_scope(make_session_factory(engine)) as session:
        user = UserRepository(session).create_user(f"bench-{uuid.uuid4().hex[:8]}@example.com", Tier.PRO)
        ApiKeyRepository(session).add_key(user, key)
        user_id = user.id
    words = vocabulary()
    with engine.begin() as conn:
        conn.execute(
            SEED_JOBS,
            {
                "salt": uuid.uuid4().hex,
                "user_id": user_id,
                "words": words,
                "vocabulary": VOCABULARY,
                "per_transcript": WORDS_PER_TRANSCRIPT,
                "jobs": jobs,
            },
        )
        job_ids = list(conn.execute(text("SELECT id FROM jobs ORDER BY id LIMIT 100")).scalars())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE jobs"))  # what autovacuum does after a bulk load
    engine.dispose()
    return Seeded(user_id, key.plaintext, job_ids, words[SEARCH_WORD_INDEX])


def routes(seeded: Seeded) -> dict[str, list[str]]:
    """Per route shown, the paths its requests cycle through."""
    return {
        "GET /v1/jobs/{id}": [f"/v1/jobs/{job_id}" for job_id in seeded.job_ids],
        "GET /v1/jobs?limit=20": ["/v1/jobs?limit=20"],
        f"GET /v1/jobs?q={seeded.search_word}": [f"/v1/jobs?q={seeded.search_word}&limit=20"],
        "GET /health": ["/health"],
    }


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _client(
    host: str,
    port: int,
    requests: Sequence[bytes],
    deadline: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    """One keep-alive connection sending the next request as soon as the last one is answered."""
    n = 0
    while time.perf_counter() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            errors.append(1)
            await asyncio.sleep(0.01)
            continue
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(requests[n % len(requests)])
                n += 1
                status = await _read_response(reader)
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors.append(status)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors.append(1)
        finally:
            writer.close()


async def _load(
    host: str, port: int, requests: Sequence[bytes], connections: int, seconds: float
) -> tuple[list[float], list[int], float]:
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(_client(host, port, requests, deadline, latencies, errors) for _ in range(connections))
    )
    return latencies, errors, time.perf_counter() - started


def load(
    route: str, host: str, port: int, paths: Sequence[str], api_key: str, connections: int, seconds: float
) -> RouteResult:
    """`connections` connections requesting `paths` in turn for `seconds`."""
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {api_key}\r\n\r\n".encode()
        for path in paths
    ]
    latencies, errors, elapsed = asyncio.run(_load(host, port, requests, connections, seconds))
    return RouteResult(route, len(latencies) + len(errors), len(errors), elapsed, latencies)


def table(
    results: Sequence[RouteResult], *, jobs: int, connections: int, seconds: float, processes: int
) -> str:
    cores = len(os.sched_getaffinity(0))
    lines = [
        f"{jobs} jobs of one user in PostgreSQL, {processes} API processes, {cores} cores, "
        f"{connections} connections, {seconds:g} s per route",
        "",
        f"| {'route':<32} | {'req/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |",
        f"|{'-' * 34}|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|{'-' * 8}:|".replace("-:|", ":|"),
    ]
    for r in results:
        p50, p99 = r.percentile(50), r.percentile(99)
        lines.append(f"| {r.route:<32} | {r.rate:>7.0f} | {p50:>7.1f} | {p99:>7.1f} | {r.errors:>6} |")
    return "\n".join(lines)


def _live(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_api(database_url: str, processes: int, workdir: Path) -> Iterator[int]:
    """The API as `scripts/run` starts it, on a free port, with an embedded Redis; yields the port."""
    redis, redis_url = start_redis(workdir)
    port = free_port()
    env = inherited_env() | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "VERBATIM_DATA_DIR": str(workdir),
    }
    with (workdir / "api.log").open("wb") as log:
        api = spawn(api_command("127.0.0.1", port, processes), env, log)
        try:
            wait_for(lambda: _live(f"http://127.0.0.1:{port}/health/live"), "the API", api, timeout=60)
            yield port
        finally:
            terminate([api, redis], grace=10)


def run(
    server_url: str, jobs: int, connections: int, seconds: float, processes: int, warmup: float = 1.0
) -> list[RouteResult]:
    with fresh_database(server_url) as url, tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        seeded = seed(url, jobs)
        with running_api(url, processes, Path(tmp)) as port:
            results = []
            for route, paths in routes(seeded).items():
                load(route, "127.0.0.1", port, paths, seeded.api_key, connections, warmup)  # plans, caches
                results.append(load(route, "127.0.0.1", port, paths, seeded.api_key, connections, seconds))
            return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url", default=DEFAULT_SERVER, help="a PostgreSQL server (a database on it)"
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=None, help="API processes (default: the setting)")
    args = parser.parse_args()
    processes = args.processes or Settings().api_processes
    started = time.monotonic()
    results = run(args.database_url, args.jobs, args.connections, args.seconds, processes)
    print(
        table(
            results, jobs=args.jobs, connections=args.connections, seconds=args.seconds, processes=processes
        )
    )
    print(f"\n(seeding and the whole run took {time.monotonic() - started:.0f} s)")
    if any(r.errors for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
