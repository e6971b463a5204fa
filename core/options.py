"""How a job asks to be transcribed: the per-job options beside its language, mode and backend.

One home for them: the API parses and checks them (`api.submission`), the job row stores them as
JSON (`Job.options`), the worker reads them back (`TranscriptionOptions.of`), and batching groups
chunks by `decode_key` (chunks of one model call must share every setting the model is told).
"""

from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

# Bounds on what a caller may send (422 beyond them).
MAX_PROMPT_CHARS = 1000
MAX_HOTWORDS_CHARS = 500
MAX_SPEAKERS = 20


class Task(StrEnum):
    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"  # to English


class Timestamps(StrEnum):
    SEGMENT = "segment"
    WORD = "word"  # word timings, with each word's probability, in json


@dataclass(frozen=True)
class TranscriptionOptions:
    """A job's transcription options; every field's default is "as the service does by default"."""

    # A name from the fleet's allow-list (`Settings.models`); None: the fleet's default model.
    model: str | None = None
    task: Task = Task.TRANSCRIBE
    # Text the model reads as if it came before the audio (names, spellings, style).
    prompt: str | None = None
    # Words to favour, comma or space separated.
    hotwords: str | None = None
    timestamps: Timestamps = Timestamps.SEGMENT
    # The part of the file to transcribe, seconds on the file's timeline (None: its start / end).
    start: float | None = None
    end: float | None = None
    # Dialogue mode: the expected number of speakers, or bounds on it (all None: found from audio).
    speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    @property
    def words(self) -> bool:
        return self.timestamps == Timestamps.WORD

    def span_seconds(self, duration: float) -> float:
        """The seconds of a `duration`-long file this job transcribes, and is billed for: from
        `start` to `end`, within the file (the API and the worker both bill by this one rule)."""
        end = duration if self.end is None else min(self.end, duration)
        return max(0.0, end - (self.start or 0.0))

    def decode_key(self) -> tuple[object, ...]:
        """What chunks of one batched model call must have in common (besides the language)."""
        return (self.model, self.task, self.prompt, self.hotwords)

    def to_json(self) -> dict[str, Any]:
        """What `Job.options` stores: only the options that differ from the defaults."""
        default = TranscriptionOptions()
        return {
            f.name: (value.value if isinstance(value, StrEnum) else value)
            for f in fields(self)
            if (value := getattr(self, f.name)) != getattr(default, f.name)
        }

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> "TranscriptionOptions":
        """The options a job row stores (None or {} for a job made before options existed)."""
        stored = dict(stored or {})
        if "task" in stored:
            stored["task"] = Task(stored["task"])
        if "timestamps" in stored:
            stored["timestamps"] = Timestamps(stored["timestamps"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in known})

    def shown(self) -> dict[str, Any]:
        """Every option with its effective value, as `GET /v1/jobs/{id}` shows them."""
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}
