"""Join chunk results into one transcript on the job's timeline.

Chunks tile the audio with no overlap, so joining is concatenation in chunk order: nothing needs
de-duplicating, and a word is never doubled at a cut. Times are clamped to their chunk so that a
backend's slightly-late end time cannot make cues overlap the next chunk.

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
from typing import Any

from repositories.models import Chunk


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration: float
    segments: list[dict[str, Any]]
    # Speaker turns `{speaker, start, end, text}`; empty unless the backend labelled speakers.
    utterances: list[dict[str, Any]] = field(default_factory=list)


def merge_chunks(chunks: Sequence[Chunk]) -> Transcript:
    ordered = sorted(chunks, key=lambda c: c.chunk_index)
    per_chunk = [_chunk_segments(c) for c in ordered]
    segments = [s for group in per_chunk for s in group]
    for i, segment in enumerate(segments):
        segment["id"] = i
    labelled = any("speaker" in s for s in segments)
    return Transcript(
        text=" ".join(s["text"] for s in segments),
        language=_majority([c.language for c in ordered]),
        duration=ordered[-1].end_seconds if ordered else 0.0,
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


def shift_segments(segments: Sequence[Any], offset: float) -> list[dict[str, Any]]:
    """Backend segments (times from the chunk's start) as JSON on the job's timeline.

    `speaker` is there only when the backend labelled one, so one-voice results keep their shape.
    """
    return [
        _with_speaker(
            {**_shift(s, offset), "words": [_with_speaker(_shift(w, offset), w.speaker) for w in s.words]},
            s.speaker,
        )
        for s in segments
    ]


def _shift(item: Any, offset: float) -> dict[str, Any]:
    return {"start": round(item.start + offset, 3), "end": round(item.end + offset, 3), "text": item.text}


def _with_speaker(item: dict[str, Any], speaker: str | None) -> dict[str, Any]:
    return item if speaker is None else {**item, "speaker": speaker}
