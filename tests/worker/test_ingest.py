"""URL ingestion: `prepare` downloads a job's audio from an origin on 127.0.0.1, through the guard."""

import contextlib
import ipaddress
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import httpcore
import pytest

from core.db import session_scope
from core.enums import JobStatus, Priority, Tier
from core.tiers import policy_for
from repositories.jobs import JobRepository
from storage.keys import source_key
from tests.conftest import create_user, load_job, speech, word_error_rate
from tests.fakes.tarpit import Mode, tarpit
from worker import ingest, tasks
from worker.context import WorkerContext

JFK = speech("jfk/jfk.flac")
MIB = 1024 * 1024


@dataclass
class OriginState:
    paths: list[str] = field(default_factory=list)
    busy: int = 0  # how many more requests to /busy answer 503
    big: int = 2 * MIB  # bytes /big and /stream send


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: OriginState

    def do_GET(self) -> None:
        self.state.paths.append(self.path)
        # The client may stop reading (what a size limit does): not the server's error.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer()

    def _answer(self) -> None:
        if self.path in ("/jfk.flac", "/audio/jfk.flac"):
            self._send(200, JFK.read_bytes())
        elif self.path == "/moved":
            self._send(302, b"", Location="/audio/jfk.flac")
        elif self.path == "/busy" and self.state.busy > 0:
            self.state.busy -= 1
            self._send(503, b"try later")
        elif self.path == "/busy":
            self._send(200, JFK.read_bytes())
        elif self.path == "/page.html":
            self._send(200, b"<html><body>not audio</body></html>" * 20)
        elif self.path == "/big":
            self._send(200, bytes(self.state.big))
        elif self.path == "/stream":
            self._stream(self.state.big)
        else:
            self._send(404, b"not found")

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, total: int) -> None:
        """Chunked, with no Content-Length: only counting the bytes can stop it."""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = bytes(64 * 1024)
        for _ in range(total // len(block)):
            self.wfile.write(b"%x\r\n%b\r\n" % (len(block), block))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[tuple[str, OriginState]]:
    state = OriginState()
    handler = type("Handler", (Origin,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def dials(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every connection the guarded client makes; one outside loopback fails the test."""
    made: list[tuple[str, int]] = []
    real_connect = httpcore.SyncBackend.connect_tcp
    real_create_connection = socket.create_connection

    def connect_tcp(self, host, port, *args, **kwargs):
        made.append((host, port))
        if not is_loopback(host):
            pytest.fail(f"a test tried to connect to {host}:{port}, outside loopback")
        return real_connect(self, host, port, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        if not is_loopback(address[0]):
            pytest.fail(f"a socket connection to {address} was attempted")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return made


@pytest.fixture
def ctx(worker_ctx: WorkerContext, dials) -> WorkerContext:
    """A worker that may fetch from loopback, as in local use (VERBATIM_WEBHOOK_ALLOW_PRIVATE)."""
    worker_ctx.settings = worker_ctx.settings.model_copy(update={"webhook_allow_private": True})
    return worker_ctx


@pytest.fixture
def user_id(sessions) -> str:
    return create_user(sessions)[0]


def submit_url(ctx: WorkerContext, user_id: str, url: str) -> str:
    """What the API does for `{"audio_url": ...}`, without HTTP: record the job, enqueue prepare."""
    job_id = str(uuid.uuid4())
    path = PurePosixPath(urlsplit(url).path)
    with session_scope(ctx.sessions) as session:
        JobRepository(session).create(
            id=job_id,
            user_id=user_id,
            priority=Priority.NORMAL,
            filename=path.name or "audio",
            size_bytes=0,
            source_key=source_key(job_id, path.suffix),
            source_url=url,
        )
    ctx.queues.enqueue_prepare(job_id, Priority.NORMAL)
    return job_id


def stored_files(ctx: WorkerContext, job_id: str) -> list[str]:
    return [str(p) for p in ctx.settings.storage_dir.rglob("*") if p.is_file() and job_id in str(p)]


def test_a_url_job_is_downloaded_and_transcribed(ctx, user_id, origin, run_worker, dials):
    base, _ = origin
    job_id = submit_url(ctx, user_id, f"{base}/jfk.flac")
    run_worker()
    job, _ = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.size_bytes == JFK.stat().st_size
    assert word_error_rate(speech("jfk/jfk.txt").read_text(), job.transcript_text) < 0.15
    assert all(host == "127.0.0.1" for host, _ in dials)


def test_a_redirect_to_another_path_is_followed(ctx, user_id, origin):
    base, state = origin
    job_id = submit_url(ctx, user_id, f"{base}/moved")
    assert tasks.prepare(job_id) == "prepared"
    job, chunks = load_job(ctx, job_id)
    assert state.paths == ["/moved", "/audio/jfk.flac"]
    assert job.size_bytes == JFK.stat().st_size and chunks
    with ctx.storage.open(job.source_key) as stored:
        assert stored.read() == JFK.read_bytes()


def test_a_404_fails_the_job_with_the_reason(ctx, user_id, origin, run_worker):
    base, _ = origin
    job_id = submit_url(ctx, user_id, f"{base}/nothing-here.mp3?signature=secret")
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == f"could not download {base}/nothing-here.mp3: the server answered 404"
    assert chunks == [] and stored_files(ctx, job_id) == []


@pytest.mark.parametrize("path", ["/big", "/stream"], ids=["content-length", "chunked"])
def test_a_download_over_the_limit_fails_and_leaves_nothing(ctx, user_id, origin, path):
    ctx.settings = ctx.settings.model_copy(update={"max_upload_mb": 1})
    base, _ = origin
    job_id = submit_url(ctx, user_id, f"{base}{path}")
    assert tasks.prepare(job_id) == "failed"
    job, _ = load_job(ctx, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == f"could not download {base}{path}: the file is larger than the 1 MB limit"
    assert not ctx.storage.exists(job.source_key) and stored_files(ctx, job_id) == []


def test_the_owners_tier_limit_applies_when_smaller(ctx, user_id, origin, monkeypatch):
    small = replace(policy_for(Tier.PRO), max_upload_mb=1)
    monkeypatch.setattr(ingest, "policy_for", lambda tier: small)
    base, _ = origin
    job_id = submit_url(ctx, user_id, f"{base}/stream")
    assert tasks.prepare(job_id) == "failed"
    assert load_job(ctx, job_id)[0].error.endswith("the file is larger than the 1 MB limit")


def test_a_download_that_is_not_audio_fails_to_decode(ctx, user_id, origin):
    base, _ = origin
    job_id = submit_url(ctx, user_id, f"{base}/page.html")
    assert tasks.prepare(job_id) == "failed"
    job, _ = load_job(ctx, job_id)
    assert job.status == JobStatus.FAILED and "decod" in job.error, job.error


def test_an_origin_error_fails_the_job_on_the_last_attempt(ctx, user_id, origin, run_worker):
    base, state = origin
    state.busy = 99
    job_id = submit_url(ctx, user_id, f"{base}/busy")
    run_worker()
    job, _ = load_job(ctx, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == f"could not download {base}/busy: the server answered 503"


def test_an_origin_error_is_retried(ctx, user_id, origin, run_worker):
    ctx.settings = ctx.settings.model_copy(update={"task_retries": 2, "retry_backoff_seconds": [0]})
    ctx.queues._settings = ctx.settings
    base, state = origin
    state.busy = 2
    job_id = submit_url(ctx, user_id, f"{base}/busy")
    run_worker()
    job, _ = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert state.paths == ["/busy"] * 3
    assert "country" in job.transcript_text


def test_an_unreachable_origin_is_a_transient_failure(ctx, user_id, origin):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = server.getsockname()[1]
    job_id = submit_url(ctx, user_id, f"http://127.0.0.1:{port}/jfk.flac")
    with pytest.raises(ingest.TransientDownloadError):
        tasks.prepare(job_id)
    server.close()
    job, _ = load_job(ctx, job_id)
    assert job.status == JobStatus.FAILED  # no RQ job around it: this was the last attempt
    assert job.error.startswith(f"could not download http://127.0.0.1:{port}/jfk.flac: the server could not")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["trickle", "body"], ids=["unfinished-headers", "trickled-body"])
def test_a_download_that_never_finishes_is_given_up_at_the_deadline(ctx, user_id, mode: Mode):
    """A byte every 0.1 s keeps every read within its timeout: only the deadline ends the download."""
    ctx.settings = ctx.settings.model_copy(update={"fetch_timeout_seconds": 1.0})
    with tarpit(mode, interval=0.1) as pit:
        url = pit.url.replace("/hook", "/talk.flac")
        job_id = submit_url(ctx, user_id, url)
        started = time.monotonic()
        with pytest.raises(ingest.TransientDownloadError):
            tasks.prepare(job_id)
        elapsed = time.monotonic() - started
        [connection] = pit.connections
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.FAILED  # no RQ job around it: this was the last attempt
    assert job.error == f"could not download {url}: the download did not finish in time"
    assert 1.0 <= elapsed < 3.0, elapsed
    assert connection.sent >= 5  # the server was still sending when the worker gave up
    assert chunks == [] and not ctx.storage.exists(job.source_key) and stored_files(ctx, job_id) == []


def test_without_allow_private_a_loopback_url_is_refused_without_connecting(
    worker_ctx, user_id, origin, dials
):
    assert worker_ctx.settings.webhook_allow_private is False
    base, state = origin
    job_id = submit_url(worker_ctx, user_id, base.replace("http://", "https://") + "/jfk.flac")
    assert tasks.prepare(job_id) == "failed"
    job, _ = load_job(worker_ctx, job_id)
    assert job.error.endswith(": 127.0.0.1 is a loopback address"), job.error
    assert dials == [] and state.paths == []


def test_a_source_already_downloaded_is_not_fetched_again(ctx, user_id, origin):
    base, state = origin
    job_id = submit_url(ctx, user_id, f"{base}/jfk.flac")
    job, _ = load_job(ctx, job_id)
    ctx.storage.put_bytes(job.source_key, JFK.read_bytes())  # an earlier run got this far
    assert tasks.prepare(job_id) == "prepared"
    assert state.paths == []
    assert load_job(ctx, job_id)[0].size_bytes == JFK.stat().st_size
