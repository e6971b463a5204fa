"""Shared fixtures.

Two stacks run the same tests: `embedded` (SQLite file + fakeredis, fast) and `real` (the
PostgreSQL and Redis on 127.0.0.1, migrated with Alembic). A real service that cannot be reached
skips its tests locally and fails them in CI.
"""

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from redis import Redis
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from core.config import Settings
from core.db import make_engine, make_session_factory, session_scope
from core.enums import Priority, Tier
from core.queues import QueueManager
from core.security import new_api_key
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Base, Chunk, Job
from repositories.users import ApiKeyRepository, UserRepository
from storage.factory import make_storage
from worker import context as worker_context
from worker.backends.base import Transcriber
from worker.batching import BatchingWorker

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "speech"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
REDIS_SERVER = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


def require_service(name: str, check: Callable[[], object]) -> None:
    try:
        check()
    except Exception as exc:
        message = f"{name} is not reachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def speech(relative: str) -> Path:
    path = SPEECH / relative
    if not path.is_file():
        pytest.fail(f"missing test recording {path}: shared/speech must sit beside the repository")
    return path


def alembic_upgrade(url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


# --- databases -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "verbatim.db"
    alembic_upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database on the real server for this test session, migrated with Alembic."""
    require_service("PostgreSQL", lambda: create_engine(POSTGRES_URL).connect().close())
    name = f"verbatim_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    alembic_upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()


# --- the two stacks ------------------------------------------------------------------------------


@pytest.fixture(params=["embedded", pytest.param("real", marks=pytest.mark.integration)])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(stack: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if stack == "embedded":
        path = tmp_path / "verbatim.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    _truncate(url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database of the real server that no other test run on this machine is using.

    Tests flush their database, so two runs sharing one would wipe each other's queues. Each run
    claims a database number with a lock key in database 0 (which tests never flush).
    """
    server = Redis.from_url(REDIS_SERVER, db=0)
    require_service("Redis", server.ping)
    for db in range(15, 0, -1):
        lock = f"verbatim:test-db-lock:{db}"
        if server.set(lock, os.getpid(), nx=True, ex=3 * 3600):
            yield f"{REDIS_SERVER.rstrip('/')}/{db}"
            server.delete(lock)
            server.close()
            return
    pytest.fail("every Redis test database 1-15 is claimed by another test run")


@pytest.fixture
def redis(stack: str, request: pytest.FixtureRequest) -> Iterator[Redis]:
    if stack == "embedded":
        client: Redis = fakeredis.FakeRedis()
    else:
        client = Redis.from_url(request.getfixturevalue("redis_url"))
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        chunk_seconds=30,
        max_upload_mb=5,
        log_json=False,
        task_retries=0,
    )


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def client(settings: Settings, redis: Redis) -> Iterator[TestClient]:
    with TestClient(create_app(settings, redis)) as test_client:
        yield test_client


# --- S3 ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server on 127.0.0.1 (moto's), started once per session."""
    from tests import s3

    with pytest.MonkeyPatch.context() as env:
        for name, value in s3.CREDENTIALS.items():
            env.setenv(name, value)
        server, endpoint = s3.start_moto()
        yield endpoint
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[str]:
    """A bucket name of this test alone; the code under test creates it, teardown empties and drops it."""
    from tests import s3

    name = f"verbatim-test-{uuid.uuid4().hex[:12]}"
    yield name
    s3.remove_bucket(s3.client(s3_endpoint), name)


# --- users ---------------------------------------------------------------------------------------


def create_user(
    sessions: sessionmaker[Session],
    tier: Tier = Tier.PRO,
    *,
    is_admin: bool = False,
    email: str | None = None,
) -> tuple[str, str]:
    """A user with one API key. Returns (user id, plaintext key)."""
    key = new_api_key()
    with session_scope(sessions) as session:
        user = UserRepository(session).create_user(
            email or f"{uuid.uuid4().hex[:8]}@example.com", tier, is_admin=is_admin
        )
        ApiKeyRepository(session).add_key(user, key)
        return user.id, key.plaintext


def create_job_row(sessions: sessionmaker[Session], user_id: str, **values: Any) -> str:
    """A job row of the user (normal priority, a jfk.flac source key), as the API records one;
    `values` set any other column (status, duration, transcript...). Returns its id."""
    job_id = str(uuid.uuid4())
    row: dict[str, Any] = {
        "priority": Priority.NORMAL,
        "filename": "jfk.flac",
        "size_bytes": 1,
        "source_key": f"jobs/{job_id}/source.flac",
    }
    with session_scope(sessions) as session:
        JobRepository(session).create(id=job_id, user_id=user_id, **(row | values))
    return job_id


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- workers -------------------------------------------------------------------------------------

_model: Transcriber | None = None


def shared_whisper(settings: Settings) -> Transcriber:
    """The bundled model, loaded once for the whole test session (the slow part of a worker start)."""
    global _model  # noqa: PLW0603
    if _model is None:
        _model = worker_context.local_whisper_factory(settings)()
    return _model


@pytest.fixture(scope="session")
def multilingual_model() -> Path:
    """The folder of the multilingual Whisper `base` that `./scripts/models` installs (and
    `./scripts/test` runs first): its tests skip without it locally, and fail in CI."""
    from scripts.models import DEFAULT_FOLDER

    if not (DEFAULT_FOLDER / "model.bin").is_file():
        message = f"no multilingual model in {DEFAULT_FOLDER}: run ./scripts/models"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return DEFAULT_FOLDER


@pytest.fixture
def worker_ctx(
    settings: Settings, redis: Redis, sessions: sessionmaker[Session]
) -> worker_context.WorkerContext:
    ctx = worker_context.WorkerContext(
        settings=settings,
        sessions=sessions,
        storage=make_storage(settings),
        queues=QueueManager(redis, settings),
        transcriber_factory=lambda: shared_whisper(settings),
    )
    worker_context.install(ctx)
    return ctx


@pytest.fixture
def run_worker(worker_ctx: worker_context.WorkerContext, redis: Redis) -> Callable[..., Any]:
    """Run an in-process worker until the queues are empty."""

    def run(**kwargs: Any) -> None:
        worker = BatchingWorker(worker_ctx.queues.ordered(), connection=redis, serializer=JSONSerializer)
        worker.work(burst=True, **kwargs)

    return run


def submit_file(
    ctx: worker_context.WorkerContext, user_id: str, path: Path, priority: Priority = Priority.NORMAL
) -> str:
    """What the API does on upload, without HTTP: store the file, record the job, enqueue prepare."""
    job_id = str(uuid.uuid4())
    key = f"jobs/{job_id}/source{path.suffix}"
    ctx.storage.put_bytes(key, path.read_bytes())
    with session_scope(ctx.sessions) as session:
        JobRepository(session).create(
            id=job_id,
            user_id=user_id,
            priority=priority,
            filename=path.name,
            size_bytes=path.stat().st_size,
            source_key=key,
        )
    ctx.queues.enqueue_prepare(job_id, priority)
    return job_id


def load_job(ctx: worker_context.WorkerContext, job_id: str) -> tuple[Job, list[Chunk]]:
    with session_scope(ctx.sessions) as session:
        job = JobRepository(session).get(job_id)
        assert job is not None
        return job, list(ChunkRepository(session).list_for_job(job_id))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER after Whisper's English normalization, as the accuracy figures in this project are quoted."""
    from jiwer import wer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    return float(wer(normalize(reference), normalize(hypothesis)))
