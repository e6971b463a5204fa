"""Example Verbatim client: upload a recording, follow its progress, fetch the transcript.

    python -m scripts.client --url http://127.0.0.1:8000 --key KEY talk.mp3 --format srt --out talk.srt

Also usable as a library: `submit`, `wait` and `transcript` take an `httpx.Client` from `connect`.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx

FINAL = {"completed", "failed"}
POLL_SECONDS = 0.5


def connect(url: str, key: str) -> httpx.Client:
    # Uploads of long recordings can take a while on a slow link: no overall timeout on writes.
    timeout = httpx.Timeout(60, write=None)
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)


def submit(client: httpx.Client, path: Path, **fields: str) -> dict[str, Any]:
    """Upload `path` (streamed from disk by httpx, never read whole) with optional form fields."""
    with path.open("rb") as audio:
        response = client.post("/v1/jobs", files={"file": (path.name, audio)}, data=fields)
    response.raise_for_status()
    job: dict[str, Any] = response.json()
    return job


def wait(client: httpx.Client, job_id: str, timeout: float, quiet: bool = False) -> dict[str, Any]:
    """Poll until the job is completed or failed; prints `chunks 3/9` to stderr as it moves."""
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        response = client.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        line = _progress(job)
        if not quiet and line != shown:
            print(line, file=sys.stderr, flush=True)
            shown = line
        if job["status"] in FINAL:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def _progress(job: dict[str, Any]) -> str:
    total = job["progress"]["chunks_total"]
    if total is None:  # not cut into chunks yet
        return str(job["status"])
    return f"chunks {job['progress']['chunks_completed']}/{total}"


def transcript(client: httpx.Client, job_id: str, fmt: str = "txt") -> str:
    response = client.get(f"/v1/jobs/{job_id}/transcript", params={"format": fmt})
    response.raise_for_status()
    return response.text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("file", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="API key, sent as 'Authorization: Bearer <key>'")
    parser.add_argument("--language", help="e.g. en; omit to detect")
    parser.add_argument("--priority", choices=["high", "normal", "low"])
    parser.add_argument("--format", default="txt", choices=["txt", "srt", "vtt", "json"])
    parser.add_argument("--out", type=Path, help="write the transcript here instead of stdout")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the job")
    args = parser.parse_args(argv)
    fields = {k: v for k, v in (("language", args.language), ("priority", args.priority)) if v}
    try:
        with connect(args.url, args.key) as client:
            job = wait(client, submit(client, args.file, **fields)["id"], args.timeout)
            if job["status"] == "failed":
                print(f"job {job['id']} failed: {job['error']}", file=sys.stderr)
                return 1
            text = transcript(client, job["id"], args.format)
    except httpx.HTTPStatusError as exc:
        # The API explains refusals (bad key, unsupported file, too large) in its JSON body.
        print(f"{exc.response.status_code}: {exc.response.text}", file=sys.stderr)
        return 1
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
