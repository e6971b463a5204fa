"""faster-whisper, batched: several chunks in one model call, on the CPU or a CUDA GPU.

Build one per worker process: loading the model is the slow part. Each chunk (a window of at most
30 s, the model's own) is decoded in one pass without timestamp tokens, as faster-whisper's batched
pipeline does: a timestamped pass may end early and, with no second pass, drop the rest of the
window. A chunk comes back as one segment, with its words' timings when they are asked for (the
pipeline cuts it into sentences on the original timeline, `worker.merge.place_segments`).

Decoding is deterministic: beam search at temperature 0, no fallback sampling, and every chunk is
decoded and aligned on its own row of the batch, so its text does not depend on which other chunks
shared the batch (checked on the CPU's int8 kernels by the tests).

A call's options are the whole call's (the pipeline groups chunks that share them): `task`
(transcribe, or translate to English), `prompt` (text the model reads as if it came just before
the audio: names, spellings, style) and `hotwords` go into every window's prompt the way
faster-whisper's `transcribe` puts `initial_prompt` and `hotwords` there.
"""

import inspect
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens, pad_or_trim

from core.logging import get_logger
from core.options import Task
from worker.audio import read_audio
from worker.backends.base import ChunkTranscript, PermanentTranscriptionError, Segment, Word
from worker.backends.devices import EnginePlan

log = get_logger(__name__)

Audio = npt.NDArray[np.float32]

# faster-whisper's own defaults for attaching punctuation to words.
_TRANSCRIBE_DEFAULTS = inspect.signature(WhisperModel.transcribe).parameters
PREPEND_PUNCTUATION: str = _TRANSCRIBE_DEFAULTS["prepend_punctuations"].default
APPEND_PUNCTUATION: str = _TRANSCRIBE_DEFAULTS["append_punctuations"].default

TIME_PRECISION = 0.02  # seconds per timestamp token
# Like faster-whisper: a window's first timestamp is at most 1 s in (the planner left ~0.3 s).
MAX_INITIAL_TIMESTAMP_INDEX = 50
# Speech left after the model's last timestamp, beyond this, is decoded again from there.
TAIL_SECONDS = 0.7
CONTINUATIONS = 3
REPEAT_WORDS = 8  # words a continuation may read again from the end of the piece before it
ENGLISH_ONLY = "this model is English-only: it cannot translate (name a multilingual model)"


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int
    word_timestamps: bool


@dataclass(frozen=True)
class _Call:
    """What one `transcribe_many` call tells the model besides the audio: the task, and the text
    read before each window (hotwords and prompt, as tokens after `<|startofprev|>`)."""

    task: Task
    context: list[int]


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
        # English-only models know one language and one task: they cannot detect or translate.
        self.multilingual: bool = self._model.model.is_multilingual
        self._tokenizers: dict[tuple[str, Task], Tokenizer] = {}
        self._suppress: list[int] | None = None
        log.info(
            "model.opened",
            model=model,
            device=plan.device,
            device_index=list(plan.device_index),
            compute_type=plan.compute_type,
            threads=plan.threads,
            batch_size=plan.batch_size,
            word_timestamps=word_timestamps,
            multilingual=self.multilingual,
        )

    def transcribe(self, audio: Path, language: str | None) -> ChunkTranscript:
        return self.transcribe_many([read_audio(audio)], [language])[0]

    def transcribe_many(
        self,
        audios: Sequence[Audio],
        languages: Sequence[str | None],
        words: Sequence[bool] | None = None,
        *,
        task: Task = Task.TRANSCRIBE,
        prompt: str | None = None,
        hotwords: str | None = None,
    ) -> list[ChunkTranscript]:
        """Transcribe chunks (16 kHz mono float32, at most 30 s each) in batches of `batch_size`.

        Word timings come with every chunk when the service keeps them, and with those chunks
        `words` asks them for (to place segments in a window that joins distant stretches).
        `task`, `prompt` and `hotwords` apply to every chunk of the call.
        `PermanentTranscriptionError` for a translation on an English-only model.
        """
        call = self._call(task, prompt, hotwords)
        wanted = [self.options.word_timestamps or bool(w) for w in (words or [False] * len(audios))]
        results: list[ChunkTranscript] = []
        for begin in range(0, len(audios), self.batch_size):
            end = begin + self.batch_size
            results.extend(self._batch(audios[begin:end], languages[begin:end], wanted[begin:end], call))
        return results

    def detect_language(self, audio: Audio) -> tuple[str, float]:
        """The language spoken in the first 30 s of `audio` (16 kHz mono float32) and the model's
        probability for it. An English-only model knows one language: ("en", 1.0), at no cost."""
        if not self.multilingual:
            return "en", 1.0
        model = self._model
        encoded = model.encode(self._features([audio[: model.feature_extractor.n_samples]]))
        token, probability = model.model.detect_language(encoded)[0][0]
        return token[2:-2], float(probability)

    def _call(self, task: Task, prompt: str | None, hotwords: str | None) -> _Call:
        if task == Task.TRANSLATE and not self.multilingual:
            raise PermanentTranscriptionError(ENGLISH_ONLY)
        encode = self._tokenizer("en", Task.TRANSCRIBE).encode  # the same text tokens in any language
        return _Call(task=task, context=context_tokens(encode, prompt, hotwords, self._model.max_length))

    def _features(self, audios: Sequence[Audio]) -> npt.NDArray[np.float32]:
        """Log-Mel features of each chunk, padded to the model's 30 s window."""
        extract = self._model.feature_extractor
        return np.stack([pad_or_trim(extract(a)[..., :-1]) for a in audios])

    def _batch(
        self, audios: Sequence[Audio], languages: Sequence[str | None], wanted: Sequence[bool], call: _Call
    ) -> list[ChunkTranscript]:
        model = self._model
        encoded = model.encode(self._features(audios))
        chosen = self._languages(encoded, languages)
        tokenizers = [self._tokenizer(lang, call.task) for lang in chosen]
        durations = [len(a) / model.feature_extractor.sampling_rate for a in audios]
        decoded = self._decode(encoded, tokenizers, durations, call.context)
        transcripts = []
        for row, pieces in enumerate(decoded):
            words = self._words(encoded, row, tokenizers[row], pieces, durations[row]) if wanted[row] else []
            segments = [p.segment(words[i] if words else []) for i, p in enumerate(pieces)]
            transcripts.append(ChunkTranscript(segments=segments, language=chosen[row]))
        return transcripts

    def _decode(
        self,
        encoded: ctranslate2.StorageView,
        tokenizers: Sequence[Tokenizer],
        durations: Sequence[float],
        context: Sequence[int],
    ) -> list[list["_Piece"]]:
        """Timestamped decoding, each row continued from its last timestamp while speech is left.

        Whisper sometimes ends a window early (most often where the voice or the recording
        changes); the timestamps show where it stopped, and the planner has left only speech in the
        window, so what follows is decoded again from there, on the same encoder output (decoder
        time only), up to `CONTINUATIONS` times.
        """
        pieces: list[list[_Piece]] = [[] for _ in durations]
        rows: list[int] = list(range(len(durations)))
        starts: list[float | None] = [None] * len(durations)
        for _ in range(1 + CONTINUATIONS):
            results = self._generate(encoded, rows, tokenizers, starts, context)
            going_on: list[tuple[int, float]] = []
            for row, start, tokens in zip(rows, starts, results, strict=True):
                found = _timed_pieces(tokenizers[row], tokens, start or 0.0, durations[row])
                if found and pieces[row]:
                    found[:1] = _without_repeat(tokenizers[row], pieces[row][-1], found[0])
                before = _covered(pieces[row])
                pieces[row].extend(found)
                reached = _covered(pieces[row])
                # Go on while a pass reads further (a first pass that found nothing gets one more).
                moved = reached > before or (start is None and not found)
                if moved and durations[row] - reached > TAIL_SECONDS:
                    going_on.append((row, reached))
            if not going_on:
                break
            rows, starts = [r for r, _ in going_on], [s for _, s in going_on]
        return pieces

    def _generate(
        self,
        encoded: ctranslate2.StorageView,
        rows: Sequence[int],
        tokenizers: Sequence[Tokenizer],
        starts: Sequence[float | None],
        context: Sequence[int],
    ) -> list[list[int]]:
        """Generated tokens of some rows; a row with a start is continued from that time. Every
        row reads `context` (the call's hotwords and prompt) before its own tokens."""
        model = self._model
        batch = encoded if len(rows) == len(tokenizers) else _rows(encoded, rows)
        # A continuation starts with the timestamp it goes on from; the rest is the model's.
        prefixes = [
            [] if s is None else [_timestamp(tokenizers[r], s)] for r, s in zip(rows, starts, strict=True)
        ]
        prompts = [
            model.get_prompt(tokenizers[r], list(context), without_timestamps=False) + prefix
            for r, prefix in zip(rows, prefixes, strict=True)
        ]
        results = model.model.generate(
            batch,
            prompts,
            beam_size=self.options.beam_size,
            max_length=model.max_length,
            suppress_blank=starts[0] is None,
            suppress_tokens=self._suppressed(tokenizers[rows[0]]),
            max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
            return_scores=False,
            return_no_speech_prob=False,
        )
        return [r.sequences_ids[0][len(p) :] for r, p in zip(results, prefixes, strict=True)]

    def _languages(self, encoded: ctranslate2.StorageView, languages: Sequence[str | None]) -> list[str]:
        model = self._model.model
        if not model.is_multilingual:
            return ["en" for _ in languages]
        if all(languages):
            return [str(lang) for lang in languages]
        detected = model.detect_language(encoded)
        return [lang or found[0][0][2:-2] for lang, found in zip(languages, detected, strict=True)]

    def _tokenizer(self, language: str, task: Task = Task.TRANSCRIBE) -> Tokenizer:
        if (language, task) not in self._tokenizers:
            self._tokenizers[language, task] = Tokenizer(
                self._model.hf_tokenizer,
                self.multilingual,
                task=task.value,
                language=language if self.multilingual else None,
            )
        return self._tokenizers[language, task]

    def _words(
        self,
        encoded: ctranslate2.StorageView,
        row: int,
        tokenizer: Tokenizer,
        pieces: Sequence["_Piece"],
        duration: float,
    ) -> list[list[Word]]:
        """Each piece's word timings, from the model's cross-attention over this row alone (so that
        they cannot depend on the rest of the batch), all pieces' text aligned at once."""
        tokens = [t for p in pieces for t in p.tokens]
        if not tokens:
            return [[] for _ in pieces]
        frames = min(round(duration * self._model.frames_per_second), 3000)
        alignment = self._model.find_alignment(tokenizer, [tokens], _rows(encoded, [row]), frames)[0]
        ends = list(accumulate(len(p.tokens) for p in pieces))
        seen = 0
        for word in alignment:
            word["piece"] = bisect_right(ends, seen)
            seen += len(word["tokens"])
        merge_punctuation(alignment)
        words: list[list[Word]] = [[] for _ in pieces]
        for w in alignment:
            if w["word"]:
                words[min(w["piece"], len(pieces) - 1)].append(
                    Word(
                        start=round(float(w["start"]), 2),
                        end=round(float(w["end"]), 2),
                        text=w["word"],
                        probability=round(float(w["probability"]), 3),
                    )
                )
        return words

    def _suppressed(self, tokenizer: Tokenizer) -> list[int]:
        if self._suppress is None:
            self._suppress = list(get_suppressed_tokens(tokenizer, [-1]))
        return self._suppress


@dataclass(frozen=True)
class _Piece:
    """Decoded text between two timestamps, seconds from the start of the chunk's audio."""

    start: float
    end: float
    tokens: list[int]
    text: str

    def segment(self, words: list[Word]) -> Segment:
        """As a segment; with words, it runs from its first word to its last (the alignment is
        finer than the timestamp tokens)."""
        if not words:
            return Segment(start=self.start, end=self.end, text=self.text)
        return Segment(
            start=words[0].start, end=max(words[-1].end, words[0].start), text=self.text, words=words
        )


def context_tokens(
    encode: Callable[[str], list[int]], prompt: str | None, hotwords: str | None, max_length: int
) -> list[int]:
    """The text a window's prompt holds between `<|startofprev|>` and `<|startoftranscript|>`:
    hotwords, then the prompt as if it were the text just before the audio, each with a leading
    space, as faster-whisper's `transcribe` encodes them. Together they keep to half the decoder's
    length (Whisper's own bound on previous text), so that the other half is left for the window's
    text: hotwords are cut at their end, the prompt at its start (its end is nearest the audio)."""
    budget = max_length // 2 - 1
    hot = _encoded(encode, hotwords)[:budget]
    before = _encoded(encode, prompt)
    room = budget - len(hot)
    return hot + (before[-room:] if room else [])


def _encoded(encode: Callable[[str], list[int]], text: str | None) -> list[int]:
    return encode(" " + text.strip()) if text and text.strip() else []


def _covered(pieces: Sequence[_Piece]) -> float:
    return pieces[-1].end if pieces else 0.0


def _without_repeat(tokenizer: Tokenizer, before: _Piece, piece: _Piece) -> list[_Piece]:
    """`piece` less the words it begins with that `before` ends with (at most `REPEAT_WORDS`): a
    piece the model closed early often holds its next words already, and a continuation from its
    end reads them again."""
    words, word_tokens = tokenizer.split_to_word_tokens([*piece.tokens, tokenizer.eot])
    words, word_tokens = words[:-1], word_tokens[:-1]  # the end-of-text marker
    previous = [_plain(w) for w in tokenizer.split_to_word_tokens([*before.tokens, tokenizer.eot])[0][:-1]]
    ours = [_plain(w) for w in words]
    repeated = next(
        (k for k in range(min(REPEAT_WORDS, len(ours), len(previous)), 0, -1) if previous[-k:] == ours[:k]),
        0,
    )
    if not repeated:
        return [piece]
    tokens = [t for group in word_tokens[repeated:] for t in group]
    text = tokenizer.decode(tokens).strip()
    return [_Piece(piece.start, piece.end, tokens=tokens, text=text)] if _readable(text) else []


def _readable(text: str) -> bool:
    """Whether text has anything to read: a lone full stop is not kept as a piece."""
    return any(c.isalnum() for c in text)


def _plain(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum())


def _timestamp(tokenizer: Tokenizer, seconds: float) -> int:
    return int(tokenizer.timestamp_begin) + round(seconds / TIME_PRECISION)


def _timed_pieces(tokenizer: Tokenizer, tokens: Sequence[int], start: float, duration: float) -> list[_Piece]:
    """Pieces of text between timestamp tokens (`<|t0|> text <|t1|>`), with times clamped to the
    audio and kept in order. Text the model left without a closing timestamp runs to the end of the
    audio. Pieces with nothing to read (a lone full stop) are left out."""
    pieces: list[_Piece] = []
    opened, text = start, list[int]()

    def close(at: float) -> None:
        end = min(max(at, opened), duration)
        words = tokenizer.decode(text).strip()
        if _readable(words):
            pieces.append(
                _Piece(start=round(min(opened, end), 3), end=round(end, 3), tokens=list(text), text=words)
            )

    for token in tokens:
        if token == tokenizer.eot:
            break
        if token < tokenizer.timestamp_begin:
            text.append(token)
            continue
        at = (token - tokenizer.timestamp_begin) * TIME_PRECISION
        if text:
            close(at)
            text = []
        opened = max(at, pieces[-1].end if pieces else start)
    if text:
        close(duration)
    return pieces


def _rows(encoded: ctranslate2.StorageView, rows: Sequence[int]) -> ctranslate2.StorageView:
    """Some chunks' encoder output, on the CPU (the model takes it from there on any device)."""
    on_cpu = encoded if encoded.device == "cpu" else encoded.to_device(ctranslate2.Device.cpu)
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(on_cpu)[list(rows)]))


def merge_punctuation(alignment: list[dict[str, Any]]) -> None:
    from faster_whisper.transcribe import merge_punctuations

    merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
