"""Where each object of a job lives. Every object of a job sits under `jobs/{job_id}/`."""


def source_key(job_id: str, extension: str) -> str:
    return f"jobs/{job_id}/source{extension}"


def chunk_key(job_id: str, index: int) -> str:
    return f"{chunks_prefix(job_id)}/{index:05d}.wav"


def chunks_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/chunks"


def transcript_key(job_id: str, fmt: str) -> str:
    return f"jobs/{job_id}/transcript.{fmt}"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}"
