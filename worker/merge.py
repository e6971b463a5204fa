"""Join chunk results into one transcript on the job's timeline.

Chunks hold stretches of speech in order, with no overlap, so joining is concatenation in chunk
order: nothing needs de-duplicating, and a word is never doubled at a cut. Times are clamped to
their chunk so that a backend's slightly-late end time cannot make cues overlap the next chunk.

Speakers (a `dialogue` job): segments and words keep the label their chunk's backend gave them, and
consecutive segments of one speaker form an utterance (a turn). Chunks are transcribed
independently, and a provider names speakers per request in order of appearance, so "A" in one
chunk is not guaranteed to be the same person as "A" in the next: labels are kept as each chunk
gave them, and a turn never spans a cut. AssemblyAI chunks are 10 minutes by default, so most
conversations are one chunk and labelled consistently throughout.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from repositories.models import Chunk
from worker.planning import to_source_time


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration: float
    segments: list[dict[str, Any]]
    # Speaker turns `{speaker, start, end, text}`; empty unless the backend labelled speakers.
    utterances: list[dict[str, Any]] = field(default_factory=list)


def merge_chunks(chunks: Sequence[Chunk], duration: float) -> Transcript:
    ordered = sorted(chunks, key=lambda c: c.chunk_index)
    # A file without speech has no chunks: its transcript is empty.
    per_chunk = [_chunk_segments(c) for c in ordered]
    segments = [s for group in per_chunk for s in group]
    for i, segment in enumerate(segments):
        segment["id"] = i
    labelled = any("speaker" in s for s in segments)
    return Transcript(
        text=" ".join(s["text"] for s in segments),
        language=_majority([c.language for c in ordered]),
        duration=duration,
        segments=segments,
        utterances=[u for group in per_chunk for u in _utterances(group)] if labelled else [],
    )


def _chunk_segments(chunk: Chunk) -> list[dict[str, Any]]:
    segments = [_clamp(s, chunk.start_seconds, chunk.end_seconds) for s in chunk.segments or []]
    return [s for s in segments if s["text"]]


def _utterances(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive segments of one speaker, within one chunk, as one turn."""
    turns: list[dict[str, Any]] = []
    for s in segments:
        speaker = s.get("speaker")
        if turns and turns[-1]["speaker"] == speaker:
            turns[-1]["end"] = s["end"]
            turns[-1]["text"] += " " + s["text"]
        else:
            turns.append({"speaker": speaker, "start": s["start"], "end": s["end"], "text": s["text"]})
    return turns


def _clamp(segment: dict[str, Any], low: float, high: float) -> dict[str, Any]:
    def fit(t: float) -> float:
        return round(min(max(t, low), high), 3)

    words = [{**w, "start": fit(w["start"]), "end": fit(w["end"])} for w in segment.get("words", [])]
    clamped = {
        "start": fit(segment["start"]),
        "end": fit(segment["end"]),
        "text": segment["text"].strip(),
        "words": words,
    }
    return _with_speaker(clamped, segment.get("speaker"))


def _majority(languages: list[str | None]) -> str | None:
    counts = Counter(lang for lang in languages if lang)
    return counts.most_common(1)[0][0] if counts else None


# A segment cut from word timings ends at a sentence end, at a pause this long, or at this length.
SENTENCE_END = (".", "?", "!", "。", "？", "！")  # noqa: RUF001 - full-width marks end sentences too
SEGMENT_PAUSE_SECONDS = 1.0
SEGMENT_MAX_SECONDS = 12.0


def needs_word_timings(spans: list[list[float]]) -> bool:
    """Whether a chunk's text can only be placed with word timings: its audio joins stretches that
    lie apart on the timeline, so one segment of text may belong to both."""
    return any(b[0] - a[1] >= SEGMENT_PAUSE_SECONDS for a, b in pairwise(spans))


def place_segments(segments: Sequence[Any], spans: list[list[float]], *, words: bool) -> list[dict[str, Any]]:
    """Backend segments (times from the start of the chunk's audio) as JSON on the job's timeline.

    Every time goes back through the chunk's spans. A segment whose words are timed, and that no
    speaker label shapes, is cut at sentence ends and pauses on the job's timeline, so a cue never
    spans a stretch the model did not hear. `words=False` keeps the words out of the result (they
    were only needed to place the segments). `speaker` is there only when the backend labelled one.
    """
    placed: list[dict[str, Any]] = []
    for segment in segments:
        timed = [_place_word(w, spans) for w in segment.words]
        if timed and segment.speaker is None:
            placed.extend(_sentences(timed, keep_words=words))
            continue
        item = {
            "start": _at(spans, segment.start, is_end=False),
            "end": _at(spans, segment.end, is_end=True),
            "text": segment.text,
            "words": timed if words else [],
        }
        placed.append(_with_speaker(item, segment.speaker))
    return placed


def _at(spans: list[list[float]], t: float, *, is_end: bool) -> float:
    return round(to_source_time(spans, t, is_end=is_end), 3)


def _place_word(word: Any, spans: list[list[float]]) -> dict[str, Any]:
    placed = {
        "start": _at(spans, word.start, is_end=False),
        "end": _at(spans, word.end, is_end=True),
        "text": word.text,
    }
    if word.probability is not None:
        placed["probability"] = word.probability
    return _with_speaker(placed, word.speaker)


def _sentences(words: list[dict[str, Any]], *, keep_words: bool) -> list[dict[str, Any]]:
    groups: list[list[dict[str, Any]]] = [[]]
    for word in words:
        group = groups[-1]
        if group and _ends_segment(group, word):
            groups.append(group := [])
        group.append(word)
    return [
        {
            "start": group[0]["start"],
            "end": max(group[-1]["end"], group[0]["start"]),
            "text": _joined(group),
            "words": group if keep_words else [],
        }
        for group in groups
        if group
    ]


def _joined(words: list[dict[str, Any]]) -> str:
    """Whisper's words carry their own leading space (and none in languages written without
    spaces); a hosted backend's words are bare and need one between them."""
    texts = [w["text"] for w in words]
    if any(t[:1].isspace() for t in texts):
        return "".join(texts).strip()
    return " ".join(t.strip() for t in texts)


def _ends_segment(group: list[dict[str, Any]], following: dict[str, Any]) -> bool:
    last = group[-1]
    return bool(
        last["text"].strip().endswith(SENTENCE_END)
        or following["start"] - last["end"] >= SEGMENT_PAUSE_SECONDS
        or following["end"] - group[0]["start"] > SEGMENT_MAX_SECONDS
    )


def _with_speaker(item: dict[str, Any], speaker: str | None) -> dict[str, Any]:
    return item if speaker is None else {**item, "speaker": speaker}
