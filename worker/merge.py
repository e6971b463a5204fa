"""Join chunk results into one transcript on the job's timeline.

Chunks tile the audio with no overlap, so joining is concatenation in chunk order: nothing needs
de-duplicating, and a word is never doubled at a cut. Times are clamped to their chunk so that a
backend's slightly-late end time cannot make cues overlap the next chunk.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from repositories.models import Chunk


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration: float
    segments: list[dict[str, Any]]


def merge_chunks(chunks: Sequence[Chunk]) -> Transcript:
    ordered = sorted(chunks, key=lambda c: c.chunk_index)
    segments = [_clamp(s, c.start_seconds, c.end_seconds) for c in ordered for s in c.segments or []]
    segments = [s for s in segments if s["text"]]
    for i, segment in enumerate(segments):
        segment["id"] = i
    return Transcript(
        text=" ".join(s["text"] for s in segments),
        language=_majority([c.language for c in ordered]),
        duration=ordered[-1].end_seconds if ordered else 0.0,
        segments=segments,
    )


def _clamp(segment: dict[str, Any], low: float, high: float) -> dict[str, Any]:
    def fit(t: float) -> float:
        return round(min(max(t, low), high), 3)

    words = [{**w, "start": fit(w["start"]), "end": fit(w["end"])} for w in segment.get("words", [])]
    return {
        "start": fit(segment["start"]),
        "end": fit(segment["end"]),
        "text": segment["text"].strip(),
        "words": words,
    }


def _majority(languages: list[str | None]) -> str | None:
    counts = Counter(lang for lang in languages if lang)
    return counts.most_common(1)[0][0] if counts else None


def shift_segments(segments: Sequence[Any], offset: float) -> list[dict[str, Any]]:
    """Backend segments (times from the chunk's start) as JSON on the job's timeline."""
    return [
        {
            "start": round(s.start + offset, 3),
            "end": round(s.end + offset, 3),
            "text": s.text,
            "words": [
                {"start": round(w.start + offset, 3), "end": round(w.end + offset, 3), "text": w.text}
                for w in s.words
            ],
        }
        for s in segments
    ]
