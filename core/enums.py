from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)

    @property
    def is_active(self) -> bool:
        return self in (JobStatus.PENDING, JobStatus.PROCESSING)


class ChunkStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Higher is served first."""
        return {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2}[self]


class Tier(StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class TranscriptFormat(StrEnum):
    TXT = "txt"
    SRT = "srt"
    VTT = "vtt"
    JSON = "json"

    @property
    def media_type(self) -> str:
        return {
            TranscriptFormat.TXT: "text/plain; charset=utf-8",
            TranscriptFormat.SRT: "application/x-subrip; charset=utf-8",
            TranscriptFormat.VTT: "text/vtt; charset=utf-8",
            TranscriptFormat.JSON: "application/json",
        }[self]


class Backend(StrEnum):
    """Where a job's chunks are transcribed."""

    LOCAL = "local"
    ASSEMBLYAI = "assemblyai"


class Mode(StrEnum):
    """`dialogue` asks the backend to label speakers; `mono` is one voice, no labels."""

    MONO = "mono"
    DIALOGUE = "dialogue"
