"""What a worker process builds once at start-up and every task uses.

RQ imports task functions by name, so they cannot take these as arguments; the worker's entry point
(or a test) installs one `WorkerContext` per process before any task runs.

Transcribers are built on first use and kept: a hosted backend's for the life of the process, the
local models by name from the fleet's allow-list (`Settings.model_table`), at most
`settings.resident_models` of them at once (`worker.models.ResidentModels`).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.db import make_engine, make_session_factory
from core.enums import Backend
from core.queues import QueueManager
from storage.base import Storage
from storage.factory import make_storage
from worker.backends.base import BatchTranscriber, PermanentTranscriptionError, Transcriber
from worker.backends.devices import EnginePlan, cuda_device_count, plan_engine
from worker.models import ResidentModels

NO_ASSEMBLYAI_KEY = "this service has no AssemblyAI API key (VERBATIM_ASSEMBLYAI_API_KEY)"


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    queues: QueueManager
    # Builds the fleet default's transcriber (`settings.transcription_backend`; for the local
    # backend, the default model `settings.default_model_name`).
    transcriber_factory: Callable[[], Transcriber]
    # Transcribers of hosted backends, built when a job first names one.
    _others: dict[Backend, Transcriber] = field(default_factory=dict)
    # What a batch run by the worker loop left for its chunk tasks: (job id, index) → outcome
    # (`worker.transcription.Outcome`). Each task takes its own.
    batch_outcomes: dict[tuple[str, int], Any] = field(default_factory=dict)
    # The local models loaded in this process, by name.
    models: ResidentModels[Transcriber] = field(init=False)

    def __post_init__(self) -> None:
        self.models = ResidentModels(self.settings.resident_models)

    @property
    def transcriber(self) -> Transcriber:
        """The fleet default's: built on first use, then reused for every chunk it transcribes."""
        return self.transcriber_for(self.default_backend)

    @property
    def _transcriber(self) -> Transcriber | None:
        """The fleet default's transcriber if it is built. Tests and benchmarks install a stand-in
        here; None has `transcriber_factory` build it again on next use."""
        if self.default_backend == Backend.LOCAL:
            return self.models.peek(self.settings.default_model_name)
        return self._others.get(self.default_backend)

    @_transcriber.setter
    def _transcriber(self, transcriber: Transcriber | None) -> None:
        if self.default_backend == Backend.LOCAL:
            self.models.drop(self.settings.default_model_name)
            if transcriber is not None:
                self.models.put(self.settings.default_model_name, transcriber)
        else:
            self._others.pop(self.default_backend, None)
            if transcriber is not None:
                self._others[self.default_backend] = transcriber

    @property
    def default_backend(self) -> Backend:
        return Backend(self.settings.transcription_backend)

    def backend_for(self, requested: Backend | None) -> Backend:
        """The backend a job runs on: the one it names, else the fleet default (as of now)."""
        return requested or self.default_backend

    def batch_size(self) -> int:
        """Chunks the fleet default's model takes in one call (1: it does not batch)."""
        transcriber = self.transcriber
        return transcriber.batch_size if isinstance(transcriber, BatchTranscriber) else 1

    def engine(self) -> dict[str, object]:
        """What this worker transcribes with, as /health and the start-up log show it."""
        info: dict[str, object] = {"backend": self.default_backend.value, "batch_size": self.batch_size()}
        plan = getattr(self.transcriber, "plan", None)
        if isinstance(plan, EnginePlan):
            model = self.settings.model_table[self.settings.default_model_name]
            info |= {"model": Path(model).name or model}
            info |= plan.describe()
        return info

    def transcriber_for(self, backend: Backend, model: str | None = None) -> Transcriber:
        """The transcriber of `backend`; for the local backend, of the model named `model` in the
        allow-list (None: the fleet's default model). Built on first use, then reused.

        `PermanentTranscriptionError` if this service cannot run it (no AssemblyAI key, a model
        name the allow-list does not hold).
        """
        if backend == Backend.LOCAL:
            return self._local(model or self.settings.default_model_name)
        if backend not in self._others:
            self._others[backend] = self._build_hosted(backend)
        return self._others[backend]

    def _build_hosted(self, backend: Backend) -> Transcriber:
        if backend == self.default_backend:
            return self.transcriber_factory()
        return build_transcriber(self.settings, backend)

    def _local(self, name: str) -> Transcriber:
        table = self.settings.model_table
        if name not in table:
            raise PermanentTranscriptionError(
                f"unknown model '{name}': this service offers {', '.join(table)}"
            )
        return self.models.get(name, lambda: self._load(name))

    def _load(self, name: str) -> Transcriber:
        if self.default_backend == Backend.LOCAL and name == self.settings.default_model_name:
            return self.transcriber_factory()
        return local_whisper_factory(self.settings, name)()


_current: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    global _current  # noqa: PLW0603 - one context per process, set once at start-up
    _current = context


def current() -> WorkerContext:
    if _current is None:
        raise RuntimeError("no worker context installed: start workers with `python -m worker.main`")
    return _current


def local_whisper_factory(settings: Settings, name: str | None = None) -> Callable[[], Transcriber]:
    """How to load the allow-list's model `name` (None: the fleet's default model)."""

    def build() -> Transcriber:
        from worker.backends.local import LocalWhisper

        return LocalWhisper(
            settings.model_table[name or settings.default_model_name],
            engine_plan(settings),
            beam_size=settings.whisper_beam_size,
            word_timestamps=settings.whisper_word_timestamps,
        )

    return build


def engine_plan(settings: Settings) -> EnginePlan:
    """The device, compute type, threads and batch size this process's local model runs with."""
    return plan_engine(
        device=settings.whisper_device,
        device_index=settings.whisper_device_index,
        compute_type=settings.whisper_compute_type,
        threads=settings.whisper_threads,
        batch_size=settings.whisper_batch_size,
        cuda_devices=cuda_device_count() if settings.whisper_device != "cpu" else 0,
    )


def assemblyai_factory(settings: Settings) -> Callable[[], Transcriber]:
    def build() -> Transcriber:
        from worker.backends.assemblyai import AssemblyAI

        if settings.assemblyai_api_key is None:
            # Only when a job names the backend: Settings refuses it as the fleet default without one.
            raise PermanentTranscriptionError(NO_ASSEMBLYAI_KEY)
        return AssemblyAI(
            settings.assemblyai_api_key.get_secret_value(),
            base_url=settings.assemblyai_base_url,
            poll_interval=settings.assemblyai_poll_seconds,
            # Stop polling before RQ's job timeout stops the task, so the recorded error is ours.
            timeout=settings.chunk_timeout_seconds * 0.9,
        )

    return build


def transcriber_factory(settings: Settings, backend: Backend | None = None) -> Callable[[], Transcriber]:
    """How to build `backend`'s transcriber (default: the fleet's, `settings.transcription_backend`)."""
    if (backend or Backend(settings.transcription_backend)) == Backend.ASSEMBLYAI:
        return assemblyai_factory(settings)
    return local_whisper_factory(settings)


def build_transcriber(settings: Settings, backend: Backend) -> Transcriber:
    return transcriber_factory(settings, backend)()


def build_context(settings: Settings, redis: Redis) -> WorkerContext:
    return WorkerContext(
        settings=settings,
        sessions=make_session_factory(make_engine(settings.database_url)),
        storage=make_storage(settings),
        queues=QueueManager(redis, settings),
        transcriber_factory=transcriber_factory(settings),
    )
