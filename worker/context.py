"""What a worker process builds once at start-up and every task uses.

RQ imports task functions by name, so they cannot take these as arguments; the worker's entry point
(or a test) installs one `WorkerContext` per process before any task runs.
"""

from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.db import make_engine, make_session_factory
from core.queues import QueueManager
from storage.base import Storage
from storage.factory import make_storage
from worker.backends.base import Transcriber


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    queues: QueueManager
    transcriber_factory: Callable[[], Transcriber]
    _transcriber: Transcriber | None = None

    @property
    def transcriber(self) -> Transcriber:
        """Built on first use, then reused for every chunk this process transcribes."""
        if self._transcriber is None:
            self._transcriber = self.transcriber_factory()
        return self._transcriber


_current: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    global _current  # noqa: PLW0603 - one context per process, set once at start-up
    _current = context


def current() -> WorkerContext:
    if _current is None:
        raise RuntimeError("no worker context installed: start workers with `python -m worker.main`")
    return _current


def local_whisper_factory(settings: Settings) -> Callable[[], Transcriber]:
    def build() -> Transcriber:
        from worker.backends.local import LocalWhisper

        return LocalWhisper(
            settings.whisper_model,
            compute_type=settings.whisper_compute_type,
            threads=settings.whisper_threads,
            beam_size=settings.whisper_beam_size,
        )

    return build


def assemblyai_factory(settings: Settings) -> Callable[[], Transcriber]:
    def build() -> Transcriber:
        from worker.backends.assemblyai import AssemblyAI

        assert settings.assemblyai_api_key is not None  # Settings refuses the backend without one
        return AssemblyAI(
            settings.assemblyai_api_key.get_secret_value(),
            base_url=settings.assemblyai_base_url,
            poll_interval=settings.assemblyai_poll_seconds,
            # Stop polling before RQ's job timeout stops the task, so the recorded error is ours.
            timeout=settings.chunk_timeout_seconds * 0.9,
        )

    return build


def transcriber_factory(settings: Settings) -> Callable[[], Transcriber]:
    if settings.transcription_backend == "assemblyai":
        return assemblyai_factory(settings)
    return local_whisper_factory(settings)


def build_context(settings: Settings, redis: Redis) -> WorkerContext:
    return WorkerContext(
        settings=settings,
        sessions=make_session_factory(make_engine(settings.database_url)),
        storage=make_storage(settings),
        queues=QueueManager(redis, settings),
        transcriber_factory=transcriber_factory(settings),
    )
