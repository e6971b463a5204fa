"""faster-whisper, batched: several chunks in one model call, on the CPU or a CUDA GPU.

Build one per worker process: loading the model is the slow part. Each chunk (a window of at most
30 s, the model's own) is decoded in one pass without timestamp tokens, as faster-whisper's batched
pipeline does: a timestamped pass may end early and, with no second pass, drop the rest of the
window. A chunk comes back as one segment, with its words' timings when they are asked for (the
pipeline cuts it into sentences on the original timeline, `worker.merge.place_segments`).

Decoding is deterministic: beam search at temperature 0, no fallback sampling, and every chunk is
decoded and aligned on its own row of the batch, so its text does not depend on which other chunks
shared the batch (checked on the CPU's int8 kernels by the tests).
"""

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens, pad_or_trim

from core.logging import get_logger
from worker.audio import read_audio
from worker.backends.base import ChunkTranscript, Segment, Word
from worker.backends.devices import EnginePlan

log = get_logger(__name__)

Audio = npt.NDArray[np.float32]

# faster-whisper's own defaults for attaching punctuation to words.
_TRANSCRIBE_DEFAULTS = inspect.signature(WhisperModel.transcribe).parameters
PREPEND_PUNCTUATION: str = _TRANSCRIBE_DEFAULTS["prepend_punctuations"].default
APPEND_PUNCTUATION: str = _TRANSCRIBE_DEFAULTS["append_punctuations"].default


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int
    word_timestamps: bool


class LocalWhisper:
    def __init__(self, model: str, plan: EnginePlan, *, beam_size: int, word_timestamps: bool) -> None:
        self._model = WhisperModel(
            model,
            device=plan.device,
            device_index=list(plan.device_index),
            compute_type=plan.compute_type,
            cpu_threads=plan.threads,
        )
        self.plan = plan
        self.batch_size = plan.batch_size
        self.options = DecodeOptions(beam_size=beam_size, word_timestamps=word_timestamps)
        self._tokenizers: dict[str | None, Tokenizer] = {}
        log.info(
            "model.loaded",
            model=model,
            device=plan.device,
            device_index=list(plan.device_index),
            compute_type=plan.compute_type,
            threads=plan.threads,
            batch_size=plan.batch_size,
            word_timestamps=word_timestamps,
        )

    def transcribe(self, audio: Path, language: str | None) -> ChunkTranscript:
        return self.transcribe_many([read_audio(audio)], [language])[0]

    def transcribe_many(
        self, audios: Sequence[Audio], languages: Sequence[str | None], words: Sequence[bool] | None = None
    ) -> list[ChunkTranscript]:
        """Transcribe chunks (16 kHz mono float32, at most 30 s each) in batches of `batch_size`.

        Word timings come with every chunk when the service keeps them, and with those chunks
        `words` asks them for (to place segments in a window that joins distant stretches).
        """
        wanted = [self.options.word_timestamps or bool(w) for w in (words or [False] * len(audios))]
        results: list[ChunkTranscript] = []
        for begin in range(0, len(audios), self.batch_size):
            end = begin + self.batch_size
            results.extend(self._batch(audios[begin:end], languages[begin:end], wanted[begin:end]))
        return results

    def _batch(
        self, audios: Sequence[Audio], languages: Sequence[str | None], wanted: Sequence[bool]
    ) -> list[ChunkTranscript]:
        model = self._model
        features = np.stack([pad_or_trim(model.feature_extractor(a)[..., :-1]) for a in audios])
        encoded = model.encode(features)
        chosen = self._languages(encoded, languages)
        tokenizers = [self._tokenizer(lang) for lang in chosen]
        prompts = [model.get_prompt(t, [], without_timestamps=True) for t in tokenizers]
        results = model.model.generate(
            encoded,
            prompts,
            beam_size=self.options.beam_size,
            max_length=model.max_length,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizers[0], [-1]),
            return_scores=False,
            return_no_speech_prob=False,
        )
        tokens = [[t for t in r.sequences_ids[0] if t < tokenizers[i].eot] for i, r in enumerate(results)]
        transcripts = []
        for i, audio in enumerate(audios):
            duration = len(audio) / model.feature_extractor.sampling_rate
            words = self._words(encoded, i, tokenizers[i], tokens[i], duration) if wanted[i] else []
            text = tokenizers[i].decode(tokens[i]).strip()
            segments = [Segment(start=0.0, end=round(duration, 3), text=text, words=words)] if text else []
            transcripts.append(ChunkTranscript(segments=segments, language=chosen[i]))
        return transcripts

    def _languages(self, encoded: ctranslate2.StorageView, languages: Sequence[str | None]) -> list[str]:
        model = self._model.model
        if not model.is_multilingual:
            return ["en" for _ in languages]
        if all(languages):
            return [str(lang) for lang in languages]
        detected = model.detect_language(encoded)
        return [lang or found[0][0][2:-2] for lang, found in zip(languages, detected, strict=True)]

    def _tokenizer(self, language: str) -> Tokenizer:
        if language not in self._tokenizers:
            multilingual = self._model.model.is_multilingual
            self._tokenizers[language] = Tokenizer(
                self._model.hf_tokenizer,
                multilingual,
                task="transcribe",
                language=language if multilingual else None,
            )
        return self._tokenizers[language]

    def _words(
        self,
        encoded: ctranslate2.StorageView,
        row: int,
        tokenizer: Tokenizer,
        tokens: list[int],
        duration: float,
    ) -> list[Word]:
        """Word timings from the model's cross-attention, aligned on this chunk's row alone."""
        if not tokens:
            return []
        frames = min(round(duration * self._model.frames_per_second), 3000)
        alignment = self._model.find_alignment(tokenizer, [tokens], _row(encoded, row), frames)[0]
        merge_punctuation(alignment)
        return [
            Word(
                start=round(float(w["start"]), 2),
                end=round(float(w["end"]), 2),
                text=w["word"],
                probability=round(float(w["probability"]), 3),
            )
            for w in alignment
            if w["word"]
        ]


def _row(encoded: ctranslate2.StorageView, row: int) -> ctranslate2.StorageView:
    """One chunk's encoder output, so that its alignment cannot depend on the rest of the batch."""
    on_cpu = encoded if encoded.device == "cpu" else encoded.to_device(ctranslate2.Device.cpu)
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(on_cpu)[row : row + 1]))


def merge_punctuation(alignment: list[dict[str, Any]]) -> None:
    from faster_whisper.transcribe import merge_punctuations

    merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
