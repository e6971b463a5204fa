"""`verbatim transcribe`'s runner against a scripted service: files submitted (waiting out a
429), followed through their events, their transcripts written; a failure stays with its file."""

import io
import json
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console

from verbatim_client import Client
from verbatim_client.discovery import plan
from verbatim_client.progress import Board
from verbatim_client.transcribe import Outcome, Run, resume_command

Events = Callable[[str], list[tuple[str, dict[str, object]]]]


def completed(job_id: str) -> list[tuple[str, dict[str, object]]]:
    return [
        ("status", {"status": "pending", "chunks_total": None, "chunks_completed": 0, "error": None}),
        ("queue", {"queue_position": 1, "eta_seconds": 4.0}),
        ("status", {"status": "processing", "chunks_total": 2, "chunks_completed": 0, "error": None}),
        ("chunk", {"index": 0, "start": 0.0, "end": 5.0, "text": f"first of {job_id}"}),
        ("chunk", {"index": 1, "start": 5.0, "end": 9.0, "text": "second"}),
        ("status", {"status": "completed", "chunks_total": 2, "chunks_completed": 2, "error": None}),
    ]


class FakeService:
    """Jobs named after their upload; `busy` answers the first that many submissions with 429."""

    def __init__(self, events: Events = completed, busy: int = 0) -> None:
        self.events, self.busy = events, busy
        self.submissions: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/jobs":
            return self._submit(request)
        job_id = path.split("/")[3]
        if path.endswith("/events"):
            body = "".join(
                f"id: {i}\nevent: {name}\ndata: {json.dumps(data)}\n\n"
                for i, (name, data) in enumerate(self.events(job_id), 1)
            )
            return httpx.Response(200, text=body, headers={"Content-Type": "text/event-stream"})
        fmt = request.url.params["format"]
        return httpx.Response(200, text=f"{fmt} of {job_id}")

    def _submit(self, request: httpx.Request) -> httpx.Response:
        name = request.read().split(b'filename="')[1].split(b'"')[0].decode()
        with self._lock:
            self.submissions.append(name)
            if len(self.submissions) <= self.busy:
                return httpx.Response(
                    429, json={"error": "too_many", "detail": "active jobs"}, headers={"Retry-After": "0"}
                )
        return httpx.Response(202, json={"id": f"job-{name}", "status": "pending", "filename": name})


def run(
    tmp_path: Path, service: FakeService, *names: str, formats: tuple[str, ...] = ("srt", "txt")
) -> list[Outcome]:
    for name in names:
        (tmp_path / name).write_bytes(b"RIFF audio")
    sources = plan([str(tmp_path / n) for n in names], formats, None).sources
    client = Client("http://verbatim.test", "k", transport=httpx.MockTransport(service), max_reconnects=0)
    board = Board(Console(file=io.StringIO(), width=120))
    with client, board:
        return Run(client, board, formats, {"language": "en"}, parallel=2).run(sources)


def test_each_file_is_transcribed_and_its_outputs_written(tmp_path: Path) -> None:
    service = FakeService(busy=1)
    outcomes = run(tmp_path, service, "a.wav", "b.flac", "c.ogg")
    assert [(o.result, o.job_id) for o in outcomes] == [
        ("done", "job-a.wav"),
        ("done", "job-b.flac"),
        ("done", "job-c.ogg"),
    ]
    assert (tmp_path / "b.srt").read_text() == "srt of job-b.flac"
    assert (tmp_path / "b.txt").read_text() == "txt of job-b.flac"
    assert not list(tmp_path.glob(".*.part"))
    # The file the service turned away for now (429) was sent again, not failed.
    assert len(service.submissions) == 4
    assert sorted(set(service.submissions)) == ["a.wav", "b.flac", "c.ogg"]


def test_a_failed_job_fails_its_file_with_the_services_reason_and_not_the_others(tmp_path: Path) -> None:
    def events(job_id: str) -> list[tuple[str, dict[str, object]]]:
        if job_id != "job-bad.wav":
            return completed(job_id)
        return [
            ("status", {"status": "failed", "chunks_total": None, "chunks_completed": 0, "error": "no audio"})
        ]

    outcomes = run(tmp_path, FakeService(events), "bad.wav", "good.wav")
    assert [(o.label, o.result, o.detail) for o in outcomes] == [
        (str(tmp_path / "bad.wav"), "failed", "no audio"),
        (str(tmp_path / "good.wav"), "done", "good.srt, good.txt"),
    ]
    assert not (tmp_path / "bad.srt").exists()


def test_a_lost_connection_fails_the_file_and_says_how_to_pick_the_job_up(tmp_path: Path) -> None:
    def events(job_id: str) -> list[tuple[str, dict[str, object]]]:
        return completed(job_id)[:3]  # the stream ends before the final status, every time

    [outcome] = run(tmp_path, FakeService(events), "long.wav")
    assert outcome.result == "failed" and outcome.job_id == "job-long.wav"
    assert "the job goes on: verbatim job job-long.wav --follow" in outcome.detail


def test_the_resume_command_writes_where_the_run_would_have(tmp_path: Path) -> None:
    assert resume_command("j1", ("srt", "txt"), Path("/data/talks")) == (
        "verbatim job j1 --follow --format srt,txt --out /data/talks"
    )
    assert resume_command("j1", ("srt",), Path("/data/my talks")).endswith("--out '/data/my talks'")
