"""The one interface every transcription backend meets."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from core.options import Task


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    # The provider's label ("A", "B", …) when speakers were asked for; None otherwise.
    speaker: str | None = None
    # How sure the model is of the word (0 to 1), where the backend says.
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    """Times are seconds from the start of the audio given to the backend."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    # Set when speakers were asked for: a segment never spans two speakers.
    speaker: str | None = None


@dataclass(frozen=True)
class ChunkTranscript:
    segments: list[Segment]
    language: str | None


class PermanentTranscriptionError(Exception):
    """Retrying cannot help (a rejected API key, audio the provider refuses): fail the chunk now.

    Any other exception a backend raises is taken as transient and the chunk is retried.
    """


class ProviderTranscriptGone(Exception):
    """The provider no longer knows a transcript id a chunk remembered (deleted, expired, another
    account's): the chunk has to be submitted again."""


class Transcriber(Protocol):
    """What every backend does: one chunk in, its timed words out, one voice (no speaker labels)."""

    def transcribe(self, audio: Path, language: str | None) -> ChunkTranscript:
        """Transcribe one 16 kHz mono WAV chunk. `language=None` asks the backend to detect it."""


@runtime_checkable
class BatchTranscriber(Transcriber, Protocol):
    """A model that transcribes several chunks in one call (faster-whisper on a CPU or a GPU)."""

    batch_size: int

    def transcribe_many(
        self,
        audios: Sequence[npt.NDArray[np.float32]],
        languages: Sequence[str | None],
        words: Sequence[bool] | None = None,
        *,
        task: Task = Task.TRANSCRIBE,
        prompt: str | None = None,
        hotwords: str | None = None,
    ) -> list[ChunkTranscript]:
        """Transcribe chunks given as 16 kHz mono float32 samples; one result per chunk, in order.
        A chunk's result does not depend on the other chunks of the call. `words` asks for word
        timings of some chunks (they may come with every chunk). `task` (translate: to English),
        `prompt` (text read as if it came before the audio) and `hotwords` apply to every chunk."""


@runtime_checkable
class HostedTranscriber(Transcriber, Protocol):
    """A hosted API that queues work and bills per transcript, and can label speakers.

    Its `transcribe` is `collect(submit(...))`. The pipeline calls the two halves itself and stores
    the transcript id in between, so a retried chunk (a 5xx or a timeout while polling, a worker that
    died) collects the transcript it has already paid for instead of submitting the audio again.
    """

    def submit(self, audio: Path, language: str | None, *, speakers: bool = False) -> str:
        """Upload the chunk and create its transcript (the billed request); returns the transcript id.

        `speakers=True` asks for speaker labels: `speaker` set on every segment and word.
        """

    def collect(self, transcript_id: str) -> ChunkTranscript:
        """Wait for a transcript `submit` created, now or in an earlier attempt, and read it.

        `ProviderTranscriptGone` if the provider does not know the id.
        """
