"""Show that the worker's decode + chunking memory does not grow with the recording's length.

    python -m scripts.bench_memory [--speech DIR] [--runs 3]

Builds WAVs of about 4, 16 and 64 minutes by repeating the longform recording, then runs
the planning of `prepare` (`worker.planning.plan_windows` over `worker.audio.decode_pcm`, each
window encoded as FLAC) over each in a fresh child process, so that every peak RSS is that
file's alone (a process's peak never goes down, and freed memory is not always returned to the OS).
A baseline child that only imports worker.audio separates the import cost from the decode cost.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "speech"
LONGFORM = "longform/ljspeech_LJ001-0001_to_0032_concat.wav"  # 231 s
COPIES = (1, 4, 16)  # about 4, 16 and 64 minutes
CHUNK_SECONDS = 30.0  # the service's default chunk length
_BLOCK_FRAMES = 1 << 16


@dataclass
class Sample:
    peak_mib: float
    seconds: float  # decode + chunking only, the import excluded
    audio_seconds: float
    chunks: int


# --- child ------------------------------------------------------------------------------------


def child(path: Path | None) -> None:
    """Runs in the fresh process: import, optionally chunk `path`, print the measurements as JSON."""
    from worker.audio import decode_pcm, encode_flac
    from worker.planning import plan_windows

    started = time.perf_counter()
    chunks, audio_seconds = 0, 0.0
    if path is not None:
        for window in plan_windows(decode_pcm(path), CHUNK_SECONDS):
            encode_flac(window.pcm)  # what `prepare` stores
            chunks, audio_seconds = chunks + 1, window.end
    seconds = time.perf_counter() - started
    # Linux reports ru_maxrss in KiB.
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kib": peak_kib, "seconds": seconds, "audio": audio_seconds, "chunks": chunks}))


# --- parent -----------------------------------------------------------------------------------


def build_wav(source: Path, dest: Path, copies: int) -> None:
    """Write `copies` back-to-back repeats of `source`, one block at a time (never all in memory)."""
    with wave.open(str(source), "rb") as src, wave.open(str(dest), "wb") as out:
        out.setparams(src.getparams())  # the header's length is fixed up on close
        for _ in range(copies):
            src.rewind()
            while frames := src.readframes(_BLOCK_FRAMES):
                out.writeframes(frames)


def measure(path: Path | None) -> Sample:
    args = ["--child", str(path)] if path is not None else ["--child-baseline"]
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench_memory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return Sample(result["peak_kib"] / 1024, result["seconds"], result["audio"], result["chunks"])


def row(label: str, samples: list[Sample]) -> tuple[str, float]:
    """A table line for one input, and its median peak RSS in MiB."""
    peak = statistics.median(s.peak_mib for s in samples)
    runs = ", ".join(f"{s.peak_mib:.1f}" for s in samples)
    seconds = statistics.median(s.seconds for s in samples)
    audio, chunks = samples[0].audio_seconds, samples[0].chunks
    if audio:
        decoded = f"{audio:8.1f} {chunks:6d} {peak:9.1f}  [{runs:<17}] {seconds:8.2f} {audio / seconds:9.0f}"
    else:  # the import-only baseline
        decoded = f"{'-':>8} {'-':>6} {peak:9.1f}  [{runs:<17}] {'-':>8} {'-':>9}"
    line = f"{label:<14} {decoded}"
    return line, peak


def bench(speech: Path, runs: int) -> None:
    source = speech / LONGFORM
    if not source.is_file():
        raise SystemExit(f"missing {source} (pass --speech)")
    header = (
        f"{'input':<14} {'audio s':>8} {'chunks':>6} {'peak MiB':>9}  {'[each run]':<19} {'decode s':>8} "
        f"{'audio s/s':>9}"
    )
    print(f"median of {runs} runs, each in a fresh process; chunks of {CHUNK_SECONDS:.0f} s")
    print(header + "\n" + "-" * len(header), flush=True)
    base_line, base = row("import only", [measure(None) for _ in range(runs)])
    print(base_line, flush=True)
    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="verbatim-bench-") as folder:
        for copies in COPIES:
            path = Path(folder) / f"longform_x{copies}.wav"
            build_wav(source, path, copies)
            samples = [measure(path) for _ in range(runs)]
            line, peak = row(f"~{samples[0].audio_seconds / 60:.0f} min (x{copies})", samples)
            print(line, flush=True)
            peaks.append(peak)
            path.unlink()  # keep the temp folder small: the 64-minute WAV alone is 163 MB
    print("-" * len(header))
    print(f"peak RSS, largest / smallest file: {peaks[-1] / peaks[0]:.2f}x for {COPIES[-1]}x the audio")
    above = [peak - base for peak in (peaks[0], peaks[-1])]
    print(f"above the import baseline: {above[0]:.1f} MiB -> {above[1]:.1f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="peak memory of decode + chunking versus file length")
    parser.add_argument("--speech", type=Path, default=SPEECH, help="folder holding longform/")
    parser.add_argument("--runs", type=int, default=3, help="runs per input; the median is shown")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None or args.child_baseline:
        child(args.child)
    else:
        bench(args.speech, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
