"""The one interface every transcription backend meets."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Segment:
    """Times are seconds from the start of the audio given to the backend."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class ChunkTranscript:
    segments: list[Segment]
    language: str | None


class PermanentTranscriptionError(Exception):
    """Retrying cannot help (a rejected API key, audio the provider refuses): fail the chunk now.

    Any other exception a backend raises is taken as transient and the chunk is retried.
    """


class Transcriber(Protocol):
    def transcribe(self, audio: Path, language: str | None) -> ChunkTranscript:
        """Transcribe one 16 kHz mono WAV chunk. `language=None` asks the backend to detect it."""
