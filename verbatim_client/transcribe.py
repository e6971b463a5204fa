"""`verbatim transcribe`'s work: each recording submitted, followed through its events and its
transcripts written, several at a time; every file ends done or failed with the reason, and one
file's failure never stops the others."""

import os
import queue
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from verbatim_client.client import ApiError, Client, Option, is_url
from verbatim_client.discovery import Source, url_filename
from verbatim_client.progress import Board
from verbatim_client.schemas import ChunkEvent, StatusEvent

# The longest a file waits between tries while the service refuses it for now (429: too many of
# your jobs active, or too many requests), whatever its Retry-After says.
MAX_SLOT_WAIT = 30.0


@dataclass(frozen=True)
class Outcome:
    label: str
    result: str  # "done", "skipped" or "failed"
    job_id: str | None = None
    detail: str = ""


def resume_command(job_id: str, formats: tuple[str, ...], folder: Path) -> str:
    """The command that waits for a job again and writes its outputs where this run would have."""
    return f"verbatim job {job_id} --follow --format {','.join(formats)} --out {shlex.quote(str(folder))}"


def await_final(
    client: Client,
    board: Board,
    key: str,
    job_id: str,
    on_chunk: Callable[[ChunkEvent], None] | None = None,
) -> StatusEvent:
    """Follow the job's events onto its bar until its final status, which is returned."""
    for event in client.events(job_id):
        board.event(key, event)
        if isinstance(event, ChunkEvent) and on_chunk is not None:
            on_chunk(event)
        if isinstance(event, StatusEvent) and event.final:
            return event
    raise ConnectionError(f"the events of job {job_id} ended before its final status")


def write_outputs(client: Client, job_id: str, outputs: Mapping[str, Path]) -> None:
    """Each format downloaded and written under a temporary name, then renamed: an output that
    exists is always whole, so a later run may skip its file on sight."""
    for fmt, path in outputs.items():
        body = client.transcript(job_id, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.part")
        partial.write_bytes(body)
        os.replace(partial, path)


class Run:
    """Transcribes `sources`, `parallel` at a time, on threads (daemons: Ctrl-C in the main thread
    ends the command at once, leaving the jobs to the service)."""

    def __init__(
        self,
        client: Client,
        board: Board,
        formats: tuple[str, ...],
        options: Mapping[str, Option],
        parallel: int,
    ) -> None:
        self.client, self.board, self.formats, self.options = client, board, formats, dict(options)
        self.parallel = max(1, parallel)
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[str, Path]] = {}
        self._outcomes: list[Outcome] = []

    def run(self, sources: list[Source]) -> list[Outcome]:
        work: queue.SimpleQueue[Source] = queue.SimpleQueue()
        for source in sources:
            self.board.add(source.label, _bar_name(source))
            work.put(source)
        if len(sources) > 1:
            self.board.add_total()
        threads = [
            threading.Thread(target=self._drain, args=(work,), daemon=True)
            for _ in range(min(self.parallel, len(sources)))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # joined in slices: Ctrl-C interrupts the wait at once
                thread.join(0.2)
        order = {source.label: i for i, source in enumerate(sources)}
        return sorted(self._outcomes, key=lambda o: order[o.label])

    def finished(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def waiting(self) -> list[tuple[str, str, Path]]:
        """(label, job id, output folder) of the files submitted and not finished yet."""
        with self._lock:
            return [(label, job_id, folder) for label, (job_id, folder) in self._waiting.items()]

    def _drain(self, work: "queue.SimpleQueue[Source]") -> None:
        while True:
            try:
                source = work.get_nowait()
            except queue.Empty:
                return
            outcome = self._transcribe(source)
            with self._lock:
                self._outcomes.append(outcome)
            self._report(outcome)

    def _transcribe(self, source: Source) -> Outcome:
        job_id: str | None = None
        try:
            job_id = self._submit(source)
            final = await_final(self.client, self.board, source.label, job_id)
            if final.status != "completed":
                return Outcome(source.label, "failed", job_id, final.error or f"the job was {final.status}")
            self.board.state(source.label, "downloading")
            write_outputs(self.client, job_id, source.outputs)
            return Outcome(source.label, "done", job_id, ", ".join(p.name for p in source.outputs.values()))
        except ApiError as exc:
            return Outcome(source.label, "failed", job_id, str(exc))
        except (httpx.TransportError, ConnectionError) as exc:
            return Outcome(source.label, "failed", job_id, _lost(exc, job_id))
        except OSError as exc:
            return Outcome(source.label, "failed", job_id, f"{exc.strerror or exc}: {exc.filename or ''}")
        finally:
            with self._lock:
                self._waiting.pop(source.label, None)

    def _submit(self, source: Source) -> str:
        """Submitted, waiting out refusals that pass (429); the job then counts as waited for."""
        while True:
            self.board.state(source.label, "uploading")
            try:
                filename = url_filename(str(source.location)) if is_url(source.location) else None
                job = self.client.submit(source.location, filename=filename, **self.options)
            except ApiError as exc:
                if exc.status_code != 429:
                    raise
                self.board.state(source.label, "service busy")
                time.sleep(min(5.0 if exc.retry_after is None else exc.retry_after, MAX_SLOT_WAIT))
                continue
            folder = next(iter(source.outputs.values())).parent
            with self._lock:
                self._waiting[source.label] = (job.id, folder)
            self.board.state(source.label, "queued")
            return job.id

    def _report(self, outcome: Outcome) -> None:
        ok = outcome.result == "done"
        self.board.finish(outcome.label, "done" if ok else "failed", ok)
        if ok:
            self.board.note(f"done    {outcome.label} -> {outcome.detail}", "green")
        else:
            self.board.note(f"failed  {outcome.label}: {outcome.detail}", "red")


def _bar_name(source: Source) -> str:
    return url_filename(source.location) if isinstance(source.location, str) else source.location.name


def _lost(error: Exception, job_id: str | None) -> str:
    """A lost connection fails the file here, not the job there: say how to pick it up again."""
    reason = f"lost the connection to the service ({error or type(error).__name__})"
    return reason if job_id is None else f"{reason}; the job goes on: verbatim job {job_id} --follow"
