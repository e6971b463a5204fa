"""The same audio with the same options gives a byte-identical transcript in every format, whoever
transcribes it: one worker or four, a worker SIGKILLed mid-chunk, Redis emptied mid-job, a chunk
that failed and was retried.

Each test transcribes the same recording on a fleet of real processes (`tests/e2e/fleet.py`: API,
workers, the real PostgreSQL, a redis-server of the fleet's own) while disturbing it, and compares
the bytes of `GET /v1/jobs/{id}/transcript?format=txt|srt|vtt|json` with those of one crash-free
run on a single worker, made once for the module.
"""

import difflib
import json
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import speech
from tests.e2e.fleet import Fleet
from tests.e2e.support import LONGFORM, wait_done, wait_until

pytestmark = pytest.mark.e2e

FORMATS = ("txt", "srt", "vtt", "json")
# Long enough for several ≤ 30 s chunks, short enough for five runs on two cores.
EXCERPT_SECONDS = 120.0

Transcripts = dict[str, bytes]


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The longform recording's first two minutes or so, cut in the pause after an utterance."""
    source = speech(LONGFORM)
    layout = json.loads(source.with_suffix(".segments.json").read_text())
    last_end = max(s["end"] for s in layout["segments"] if s["end"] <= EXCERPT_SECONDS)
    cut = last_end + layout["gap_seconds"] / 2
    path = tmp_path_factory.mktemp("audio") / "excerpt.wav"
    with wave.open(str(source), "rb") as whole, wave.open(str(path), "wb") as part:
        part.setparams(whole.getparams())
        part.writeframes(whole.readframes(round(cut * whole.getframerate())))
    return path


@pytest.fixture(scope="module")
def reference(fleet: Fleet, excerpt: Path) -> Transcripts:
    """The crash-free run on one worker that every other run must match byte for byte."""
    fleet.use_workers(1)
    done = fleet.transcribe(excerpt)
    assert done["status"] == "completed", done
    assert done["progress"]["chunks_total"] >= 3, f"the excerpt should make several chunks: {done}"
    transcripts = fetch_transcripts(fleet, done["id"])
    assert transcripts["txt"].strip(), "the reference transcript is empty"
    return transcripts


def fetch_transcripts(fleet: Fleet, job_id: str) -> Transcripts:
    with fleet.client() as api:
        responses = {f: api.get(f"/v1/jobs/{job_id}/transcript", params={"format": f}) for f in FORMATS}
    for fmt, response in responses.items():
        assert response.status_code == 200, f"{fmt}: {response.status_code} {response.text}"
    return {fmt: response.content for fmt, response in responses.items()}


def assert_same_bytes(reference: Transcripts, done: dict[str, Any], fleet: Fleet, run: str) -> None:
    """The completed job's transcript in every format is the reference's, byte for byte."""
    assert done["status"] == "completed", done
    transcripts = fetch_transcripts(fleet, done["id"])
    differing = [fmt for fmt in FORMATS if transcripts[fmt] != reference[fmt]]
    if differing:
        diffs = "\n".join(_diff(reference[fmt], transcripts[fmt], fmt, run) for fmt in differing)
        pytest.fail(
            f"{run}: the transcript differs from the reference in {differing}\n{diffs}", pytrace=False
        )


def _diff(expected: bytes, actual: bytes, fmt: str, run: str, most_lines: int = 60) -> str:
    lines = list(
        difflib.unified_diff(
            expected.decode("utf-8", "replace").splitlines(keepends=True),
            actual.decode("utf-8", "replace").splitlines(keepends=True),
            fromfile=f"reference.{fmt}",
            tofile=f"{run}.{fmt}",
            n=1,
        )
    )
    if not lines:  # equal as text: the bytes differ in something `replace` decoding hides
        return f"{fmt}: {len(expected)} vs {len(actual)} bytes, same text after decoding"
    shown = [line if line.endswith("\n") else line + "⏎ (no newline)\n" for line in lines[:most_lines]]
    more = f"… {len(lines) - most_lines} more diff lines\n" if len(lines) > most_lines else ""
    return "".join(shown) + more


def test_four_workers_write_what_one_worker_writes(
    fleet: Fleet, reference: Transcripts, excerpt: Path
) -> None:
    fleet.use_workers(4)
    done = fleet.transcribe(excerpt)
    assert_same_bytes(reference, done, fleet, "4 workers")


def test_a_worker_killed_mid_chunk_changes_no_byte(
    fleet: Fleet, reference: Transcripts, excerpt: Path
) -> None:
    fleet.use_workers(4)
    killed: dict[str, Any] = {}

    def kill(job_id: str) -> None:
        pid, index = fleet.busy_with(job_id)
        fleet.kill_worker(pid)
        killed.update(index=index, row=fleet.chunk_row(job_id, index))

    done = fleet.transcribe(excerpt, during=kill)
    assert killed["row"]["status"] == "processing", f"the kill landed after the chunk was done: {killed}"
    assert fleet.chunk_row(done["id"], killed["index"])["attempts"] >= 2, "the killed chunk was not redone"
    assert_same_bytes(reference, done, fleet, "worker SIGKILLed")


def test_redis_flushed_mid_job_changes_no_byte(fleet: Fleet, reference: Transcripts, excerpt: Path) -> None:
    fleet.use_workers(2)
    flushed: dict[str, Any] = {}

    def flush(job_id: str) -> None:
        def in_progress() -> dict[int, str] | None:
            statuses = {i: row["status"] for i, row in fleet.chunk_rows(job_id).items()}
            return statuses if "processing" in statuses.values() else None

        flushed["chunks"] = wait_until(in_progress, 120, "a chunk in progress", interval=0.05)
        fleet.flush_redis()

    done = fleet.transcribe(excerpt, during=flush)
    print(f"chunk statuses when Redis was flushed: {flushed['chunks']}")
    assert_same_bytes(reference, done, fleet, "Redis flushed")


def test_a_failed_chunk_retried_changes_no_byte(fleet: Fleet, reference: Transcripts, excerpt: Path) -> None:
    # One worker, giving each chunk a single attempt: the chunk whose audio is gone fails at once.
    fleet.use_workers(1, VERBATIM_TASK_RETRIES="0")
    (worker,) = fleet.live_workers()
    moved: dict[str, Any] = {}

    def move_a_chunk_away(job_id: str) -> None:
        with fleet.client() as api:
            wait_until(lambda: planned(fleet, api, job_id), 120, "the job's chunks", interval=0.05)
        # Frozen, the worker cannot start the chunk between the look at its row and the move.
        with fleet.paused(worker):
            rows = fleet.chunk_rows(job_id)
            unstarted = [i for i, row in rows.items() if row["status"] == "pending" and row["attempts"] == 0]
            assert unstarted, f"the worker started every chunk before one could be moved away: {rows}"
            # The last one: the furthest back in the queue, the least likely to be in a batch in hand.
            index = max(unstarted)
            audio = fleet.storage_path(rows[index]["audio_key"])
            aside = audio.with_name(audio.name + ".aside")
            audio.rename(aside)
            moved.update(index=index, audio=audio, aside=aside)

    failed = fleet.transcribe(excerpt, during=move_a_chunk_away)
    assert failed["status"] == "failed", failed
    with fleet.client() as api:
        first = {c["index"]: c["status"] for c in api.get(f"/v1/jobs/{failed['id']}/chunks").json()}
        assert first[moved["index"]] == "failed", first
        kept = {i for i, status in first.items() if status == "completed"}
        assert kept, f"no chunk survived the first run: {first}"
        tried = {i: row["attempts"] for i, row in fleet.chunk_rows(failed["id"]).items()}

        moved["aside"].rename(moved["audio"])
        retried = api.post(f"/v1/jobs/{failed['id']}/retry")
        assert retried.status_code == 202, retried.text
        done = wait_done(api, failed["id"], timeout=300)

    attempts = {i: row["attempts"] for i, row in fleet.chunk_rows(done["id"]).items()}
    # Only the failed chunks ran again: the transcript joins first-run chunks with retried ones.
    assert attempts[moved["index"]] > tried[moved["index"]], (tried, attempts)
    assert all(attempts[i] == tried[i] for i in kept), (tried, attempts)
    assert_same_bytes(reference, done, fleet, "chunk retried")


def planned(fleet: Fleet, api: httpx.Client, job_id: str) -> bool:
    """Whether the job's audio is cut: it knows its number of chunks and each has its row."""
    total = api.get(f"/v1/jobs/{job_id}").json()["progress"]["chunks_total"]
    return total is not None and len(fleet.chunk_rows(job_id)) == total
