"""Accuracy and speed of a running Verbatim service against the reference transcripts.

    python -m scripts.evaluate --url http://127.0.0.1:8000 --key KEY [--files longform/*.wav ...]

Each recording is submitted through scripts.client, one at a time so that its wall time is its own,
and scored with WER after Whisper's English normalization, the way this project quotes accuracy.
The overall figure weights every file by its number of reference words. `--max-wer` turns the run
into a check: exit 1 if the overall WER is above it (or if any job failed).
"""

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

from scripts import client

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "speech"
# Relative to the speech folder; glob patterns are expanded (sorted).
DEFAULT_FILES = (
    "longform/ljspeech_LJ001-0001_to_0032_concat.wav",
    "jfk/jfk.flac",
    "librispeech/*.flac",
    "fleurs_en/*.ogg",
)
_normalize = EnglishTextNormalizer()


@dataclass
class Result:
    name: str
    duration: float  # audio seconds, as the service measured them
    chunks: int
    wall: float  # seconds from the job's acceptance to its completion, on the server's clock
    words: int  # normalized reference words
    errors: int  # substitutions + deletions + insertions
    error: str | None = None  # the job's error if it failed

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else 0.0


def expand(speech: Path, patterns: list[str]) -> list[Path]:
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(speech.glob(pattern)) if any(c in pattern for c in "*?[") else [speech / pattern]
        if not matches:
            raise SystemExit(f"nothing matches {pattern} under {speech}")
        paths += matches
    # Checked before the first upload, so that a typo does not cost a long run.
    missing = [str(p) for p in paths if not (p.is_file() and p.with_suffix(".txt").is_file())]
    if missing:
        raise SystemExit(f"no recording with a .txt reference: {', '.join(missing)}")
    return paths


def score(reference: str, hypothesis: str) -> tuple[int, int]:
    """(reference words, errors) after Whisper English normalization of both sides."""
    ref, hyp = _normalize(reference), _normalize(hypothesis)
    out = jiwer.process_words(ref, hyp)
    words = out.hits + out.substitutions + out.deletions
    return words, out.substitutions + out.deletions + out.insertions


def evaluate(http: httpx.Client, path: Path, name: str, language: str, timeout: float) -> Result:
    started = time.monotonic()
    job = client.wait(http, client.submit(http, path, language=language)["id"], timeout, quiet=True)
    wall = server_seconds(job) or time.monotonic() - started
    # A failed job is scored as an empty transcript: every reference word is a deletion.
    text = client.transcript(http, job["id"], "txt") if job["status"] == "completed" else ""
    words, errors = score(path.with_suffix(".txt").read_text(encoding="utf-8"), text)
    duration = job["audio_duration_seconds"] or 0.0
    chunks = job["progress"]["chunks_total"] or 0
    return Result(name, duration, chunks, wall, words, errors, job["error"])


def server_seconds(job: dict[str, Any]) -> float | None:
    # The server's timestamps, not our clock: polling every half second would round short jobs up.
    if not job["completed_at"]:
        return None
    done, created = (datetime.fromisoformat(job[k]) for k in ("completed_at", "created_at"))
    return (done - created).total_seconds()


_NAME = 48
_HEADER = f"{'file':<{_NAME}} {'audio s':>8} {'chunks':>6} {'wall s':>7} {'RTF':>6} {'words':>6} {'WER %':>6}"


def row(r: Result) -> str:
    # RTF = job time / audio time (queueing included, the upload not): below 1 is faster than real time.
    rtf = r.wall / r.duration if r.duration else float("nan")
    figures = f"{r.duration:8.1f} {r.chunks:6d} {r.wall:7.2f} {rtf:6.3f} {r.words:6d} {100 * r.wer:6.2f}"
    return f"{r.name:<{_NAME}} {figures}" + (f"  FAILED: {r.error}" if r.error else "")


def total(results: list[Result]) -> Result:
    return Result(
        name=f"overall ({len(results)} file{'s' * (len(results) != 1)}, word-weighted)",
        duration=sum(r.duration for r in results),
        chunks=sum(r.chunks for r in results),
        wall=sum(r.wall for r in results),
        words=sum(r.words for r in results),
        errors=sum(r.errors for r in results),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="WER and speed of a running service")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--speech", type=Path, default=SPEECH, help="folder of recordings + .txt")
    parser.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help="relative to --speech")
    parser.add_argument("--language", default="en", help="sent with every job ('auto' to detect)")
    parser.add_argument("--max-wer", type=float, help="exit 1 if the overall WER is above this (0.055)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for each job")
    args = parser.parse_args(argv)
    paths = expand(args.speech, args.files)
    print(_HEADER + "\n" + "-" * len(_HEADER), flush=True)
    results: list[Result] = []
    with client.connect(args.url, args.key) as http:
        for path in paths:
            name = str(path.relative_to(args.speech)) if path.is_relative_to(args.speech) else str(path)
            results.append(evaluate(http, path, name, args.language, args.timeout))
            print(row(results[-1]), flush=True)
    overall = total(results)
    print("-" * len(_HEADER) + "\n" + row(overall))
    failed = [r.name for r in results if r.error]
    if failed:
        print(f"{len(failed)} job(s) failed: {', '.join(failed)}", file=sys.stderr)
    if args.max_wer is not None and overall.wer > args.max_wer:
        print(f"overall WER {100 * overall.wer:.2f} % is above --max-wer {100 * args.max_wer:.2f} %")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
