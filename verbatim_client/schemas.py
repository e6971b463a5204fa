"""What the client returns: typed views of the API's JSON, each keeping the whole body in `raw`."""

import json
from dataclasses import dataclass, field
from typing import Any

from verbatim_client.sse import ServerSentEvent

FINAL_STATUSES = frozenset({"completed", "failed", "canceled"})


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    filename: str
    chunks_total: int | None
    chunks_completed: int
    error: str | None
    language: str | None
    model: str | None
    created_at: str
    queue_position: int | None = None
    eta_seconds: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def of(cls, body: dict[str, Any]) -> "Job":
        progress = body.get("progress") or {}
        return cls(
            id=body["id"],
            status=body["status"],
            filename=body.get("filename", ""),
            chunks_total=progress.get("chunks_total"),
            chunks_completed=progress.get("chunks_completed", 0),
            error=body.get("error"),
            language=body.get("language"),
            model=(body.get("options") or {}).get("model"),
            created_at=body.get("created_at", ""),
            queue_position=body.get("queue_position"),
            eta_seconds=body.get("eta_seconds"),
            raw=body,
        )


@dataclass(frozen=True)
class JobPage:
    items: list[Job]
    total: int


@dataclass(frozen=True)
class Model:
    id: str
    multilingual: bool
    default: bool


@dataclass(frozen=True)
class StatusEvent:
    """The job's status changed (or, first on every connection, what it is now)."""

    id: str | None
    status: str
    chunks_total: int | None
    chunks_completed: int
    error: str | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class ChunkEvent:
    """One chunk transcribed: its text, readable while the rest of the job runs."""

    id: str | None
    index: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class QueueEvent:
    """Where the job waits in its queue, and when the fleet's throughput says it will be done."""

    id: str | None
    queue_position: int | None
    eta_seconds: float | None


JobEvent = StatusEvent | ChunkEvent | QueueEvent


def job_event(sse: ServerSentEvent) -> JobEvent | None:
    """The typed event; None for an event name this client does not know (a newer server's)."""
    if sse.event not in ("status", "chunk", "queue"):
        return None
    data: dict[str, Any] = json.loads(sse.data)
    if sse.event == "status":
        return StatusEvent(
            sse.id,
            data["status"],
            data.get("chunks_total"),
            data.get("chunks_completed") or 0,
            data.get("error"),
        )
    if sse.event == "chunk":
        return ChunkEvent(sse.id, data["index"], data["start"], data["end"], data.get("text") or "")
    return QueueEvent(sse.id, data.get("queue_position"), data.get("eta_seconds"))
