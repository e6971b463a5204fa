"""Test recordings built from the shared speech: passages joined by chosen pauses, written as WAV.

Everything is 16 kHz mono int16 (what `worker.audio.decode_pcm` yields) and deterministic: noise
comes from a seeded generator, so a test hears the same file on every run.
"""

import hashlib
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydub import AudioSegment
from pydub.silence import detect_silence

from worker.audio import SAMPLE_RATE, Pcm, decode_pcm

_FULL_SCALE = 32768.0
_LEVEL_STEP = SAMPLE_RATE // 100  # 10 ms: the resolution of `trim`


def load(path: Path) -> Pcm:
    """A shared recording as one array of 16 kHz mono int16 samples."""
    return np.concatenate(list(decode_pcm(path)))


def spoken(text: str, voice: str, folder: Path, words_per_minute: int = 175) -> Pcm:
    """`text` read by espeak-ng's `voice` (a language: "de", "es"), as 16 kHz mono int16: speech in
    the languages the shared (English) recordings lack. espeak-ng writes 22.05 kHz; PyAV resamples."""
    name = hashlib.sha256(f"{voice}:{words_per_minute}:{text}".encode()).hexdigest()[:12]
    path = folder / f"spoken-{name}.wav"
    command = ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(path), text]
    subprocess.run(command, check=True, capture_output=True)
    return load(path)


def seconds(pcm: Pcm) -> float:
    return len(pcm) / SAMPLE_RATE


def samples(duration: float) -> int:
    return round(duration * SAMPLE_RATE)


def dbfs(pcm: Pcm) -> float:
    rms = float(np.sqrt(np.mean((pcm.astype(np.float64) / _FULL_SCALE) ** 2)))
    return 20 * float(np.log10(max(rms, 1e-12)))


def trim(pcm: Pcm, floor_dbfs: float = -40.0) -> Pcm:
    """Without the quiet lead-in and tail (10 ms steps below `floor_dbfs`), so that a pause put
    between two passages is as long as the test says, not that plus the recording's own margins."""
    steps = len(pcm) // _LEVEL_STEP
    levels = [dbfs(pcm[i * _LEVEL_STEP : (i + 1) * _LEVEL_STEP]) for i in range(steps)]
    loud = [i for i, level in enumerate(levels) if level > floor_dbfs]
    return pcm[loud[0] * _LEVEL_STEP : (loud[-1] + 1) * _LEVEL_STEP]


def tighten(pcm: Pcm, shortest_ms: int = 120, below_db: float = 12.0, keep_ms: int = 50) -> Pcm:
    """The passage with every pause inside it (`shortest_ms` or longer, `below_db` under the passage's
    loudness) shortened to `2 * keep_ms`, until none is left: read speech pauses at commas for
    300-600 ms, and a test that needs the pauses *between* passages to be the longest ones must
    take those out."""
    for _ in range(5):
        shorter = _shorten_pauses(pcm, shortest_ms, below_db, keep_ms)
        if len(shorter) == len(pcm):
            break
        pcm = shorter
    return pcm


def _shorten_pauses(pcm: Pcm, shortest_ms: int, below_db: float, keep_ms: int) -> Pcm:
    segment = AudioSegment(pcm.tobytes(), sample_width=2, frame_rate=SAMPLE_RATE, channels=1)
    pauses = detect_silence(
        segment, min_silence_len=shortest_ms, silence_thresh=segment.dBFS - below_db, seek_step=10
    )
    keep = keep_ms * SAMPLE_RATE // 1000
    parts, at = [], 0
    for begin_ms, end_ms in pauses:
        begin, end = begin_ms * SAMPLE_RATE // 1000, end_ms * SAMPLE_RATE // 1000
        # Only pauses inside the passage, and only those longer than what is kept of them.
        if begin > 0 and end < len(pcm) and end - begin > 2 * keep:
            parts.append(pcm[at : begin + keep])
            at = end - keep
    parts.append(pcm[at:])
    return np.concatenate(parts)


def silence(duration: float) -> Pcm:
    return np.zeros(samples(duration), dtype=np.int16)


def noise(duration: float, level_dbfs: float, seed: int) -> Pcm:
    """Pink noise (power falling 3 dB an octave, like a quiet room's hum and hiss) at `level_dbfs`
    RMS, from a seeded generator."""
    rng = np.random.default_rng(seed)
    count = samples(duration)
    spectrum = np.fft.rfft(rng.standard_normal(count))
    frequencies = np.fft.rfftfreq(count, 1 / SAMPLE_RATE)
    spectrum[0] = 0
    spectrum[1:] /= np.sqrt(frequencies[1:] / frequencies[1])
    pink = np.fft.irfft(spectrum, count)
    pink *= 10 ** (level_dbfs / 20) * _FULL_SCALE / np.sqrt(np.mean(pink**2))
    return np.clip(np.round(pink), -_FULL_SCALE, _FULL_SCALE - 1).astype(np.int16)


@dataclass(frozen=True)
class Placed:
    """Where one passage lies in a built recording, in seconds."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class Recording:
    pcm: Pcm
    passages: list[Placed]

    @property
    def pauses(self) -> list[tuple[float, float]]:
        """The stretches between consecutive passages: (end of one, start of the next)."""
        return [(a.end, b.start) for a, b in zip(self.passages, self.passages[1:], strict=False)]

    @property
    def duration(self) -> float:
        return seconds(self.pcm)

    def write(self, path: Path) -> Path:
        write_wav(path, self.pcm)
        return path


def join(passages: Sequence[tuple[str, Pcm]], between: Sequence[Pcm]) -> Recording:
    """The passages in order, `between[i]` after the i-th (one fewer than passages)."""
    assert len(between) == len(passages) - 1
    parts: list[Pcm] = []
    placed: list[Placed] = []
    at = 0
    for i, (name, pcm) in enumerate(passages):
        if i:
            parts.append(between[i - 1])
            at += len(between[i - 1])
        parts.append(pcm)
        placed.append(Placed(name, at / SAMPLE_RATE, (at + len(pcm)) / SAMPLE_RATE))
        at += len(pcm)
    return Recording(np.concatenate(parts), placed)


def write_wav(path: Path, pcm: Pcm) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.astype("<i2").tobytes())
