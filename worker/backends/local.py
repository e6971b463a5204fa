"""faster-whisper on the CPU. Build one per worker process: loading the model is the slow part."""

import wave
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from core.logging import get_logger
from worker.backends.base import ChunkTranscript, Segment, Word

log = get_logger(__name__)


class LocalWhisper:
    def __init__(self, model: str, *, compute_type: str, threads: int, beam_size: int) -> None:
        self._model = WhisperModel(model, device="cpu", compute_type=compute_type, cpu_threads=threads)
        self._beam_size = beam_size
        log.info("model.loaded", model=model, compute_type=compute_type, threads=threads)

    def transcribe(self, audio: Path, language: str | None) -> ChunkTranscript:
        segments, info = self._model.transcribe(
            _read_wav(audio),
            language=language,
            beam_size=self._beam_size,
            # Chunks are cut in silence and decoded independently: no prompt carried across
            # windows means a mistake in one window cannot snowball into the next.
            condition_on_previous_text=False,
            word_timestamps=True,
        )
        return ChunkTranscript(segments=[_segment(s) for s in segments], language=info.language)


def _read_wav(path: Path) -> np.typing.NDArray[np.float32]:
    # Chunks are written by `prepare` as 16 kHz mono s16, so no resampling is needed here.
    with wave.open(str(path), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def _segment(raw: object) -> Segment:
    words = [Word(start=w.start, end=w.end, text=w.word) for w in getattr(raw, "words", None) or []]
    return Segment(start=raw.start, end=raw.end, text=raw.text.strip(), words=words)  # type: ignore[attr-defined]
