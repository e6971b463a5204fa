"""The Verbatim client: a typed, synchronous Python client for the Verbatim speech-to-text API, and
the `verbatim` command built on it (`verbatim_client.cli`)."""

from verbatim_client.client import ApiError, Client
from verbatim_client.schemas import ChunkEvent, Job, JobEvent, JobPage, Model, QueueEvent, StatusEvent

__all__ = [
    "ApiError",
    "ChunkEvent",
    "Client",
    "Job",
    "JobEvent",
    "JobPage",
    "Model",
    "QueueEvent",
    "StatusEvent",
]
