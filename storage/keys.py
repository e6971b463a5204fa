"""Where each object of a job lives. Every object of a job sits under `jobs/{job_id}/`.

A direct upload waits under `uploads/{user_id}/` until `POST /v1/jobs` moves it into its job.
"""

import uuid

# The folder of every job's folder.
JOBS = "jobs"


def source_key(job_id: str, extension: str) -> str:
    return f"{job_prefix(job_id)}/source{extension}"


def chunk_key(job_id: str, index: int) -> str:
    return f"{chunks_prefix(job_id)}/{index:05d}.flac"


def chunks_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}/chunks"


def transcript_key(job_id: str, fmt: str) -> str:
    return f"{job_prefix(job_id)}/transcript.{fmt}"


def job_prefix(job_id: str) -> str:
    return f"{JOBS}/{job_id}"


def uploads_prefix(user_id: str) -> str:
    return f"uploads/{user_id}"


def upload_key(user_id: str, extension: str) -> str:
    """A fresh key for one direct upload; only the (already sanitised) extension comes from the client."""
    return f"{uploads_prefix(user_id)}/{uuid.uuid4().hex}{extension}"
