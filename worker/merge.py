"""Join chunk results into one transcript on the job's timeline.

Chunks hold stretches of speech in order, with no overlap, so joining is concatenation in chunk
order: nothing needs de-duplicating, and a word is never doubled at a cut. Times are clamped to
their chunk so that a backend's slightly-late end time cannot make cues overlap the next chunk.

Speakers (a `dialogue` job): chunks are transcribed independently, and a provider names speakers
per request ("A" is whoever spoke first in that chunk), so speakers are told apart here, once for
the whole job, by the voice prints each chunk stored (`worker.speakers`): one person has one letter
in every chunk. Every word and segment carries its letter, a segment whose words change speaker is
split there, and consecutive segments of one speaker form an utterance (a turn), across cuts too.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from repositories.models import Chunk
from worker.planning import to_source_time
from worker.speakers import SpeakerCount, label_speakers


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration: float
    segments: list[dict[str, Any]]
    # Speaker turns `{speaker, start, end, text}`; empty unless the backend labelled speakers.
    utterances: list[dict[str, Any]] = field(default_factory=list)
    # How sure the model was of `language`, when it was detected from the job's first speech.
    language_probability: float | None = None


def merge_chunks(
    chunks: Sequence[Chunk],
    duration: float,
    *,
    language: str | None = None,
    language_probability: float | None = None,
    speakers: SpeakerCount | None = None,
) -> Transcript:
    """The job's `language` (named, or detected once) is the transcript's; a job without one (a
    hosted backend detects per chunk) takes the language most of its chunks were in. `speakers`:
    a dialogue job's speaker count (None: speakers are not labelled)."""
    ordered = sorted(chunks, key=lambda c: c.chunk_index)
    # A file without speech has no chunks: its transcript is empty.
    per_chunk = [_chunk_segments(c) for c in ordered]
    if speakers is not None:
        per_chunk = _labelled(per_chunk, [c.voices for c in ordered], speakers)
    segments = [s for group in per_chunk for s in group]
    for i, segment in enumerate(segments):
        segment["id"] = i
    labelled = any("speaker" in s for s in segments)
    return Transcript(
        text=" ".join(s["text"] for s in segments),
        language=language or _majority([c.language for c in ordered]),
        duration=duration,
        segments=segments,
        utterances=_utterances(segments) if labelled else [],
        language_probability=language_probability,
    )


def _chunk_segments(chunk: Chunk) -> list[dict[str, Any]]:
    segments = [_clamp(s, chunk.start_seconds, chunk.end_seconds) for s in chunk.segments or []]
    return [s for s in segments if s["text"]]


def _labelled(
    per_chunk: list[list[dict[str, Any]]], voices: list[list[list[Any]] | None], count: SpeakerCount
) -> list[list[dict[str, Any]]]:
    """Each chunk's segments with the job's speaker on every word and segment."""
    letters = label_speakers(voices, per_chunk, count)
    return [_split_at_speakers(group, found) for group, found in zip(per_chunk, letters, strict=True)]


def _split_at_speakers(segments: list[dict[str, Any]], letters: list[str]) -> list[dict[str, Any]]:
    """The segments with their words' speakers (`letters`, one per word, or per segment without
    words), each cut where its speaker changes: a segment never spans two speakers."""
    found: list[dict[str, Any]] = []
    at = 0
    for segment in segments:
        if not segment["words"]:
            found.append({**segment, "speaker": letters[at]})
            at += 1
            continue
        words = [{**w, "speaker": s} for w, s in zip(segment["words"], letters[at:], strict=False)]
        at += len(words)
        runs = _runs(words)
        for i, run in enumerate(runs):
            start = segment["start"] if i == 0 else run[0]["start"]
            end = segment["end"] if i == len(runs) - 1 else run[-1]["end"]
            text = segment["text"] if len(runs) == 1 else _joined(run)
            found.append(
                {
                    "start": start,
                    "end": max(end, start),
                    "text": text,
                    "words": run,
                    "speaker": run[0]["speaker"],
                }
            )
    return found


def _runs(words: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive words of one speaker."""
    runs: list[list[dict[str, Any]]] = []
    for word in words:
        if runs and runs[-1][-1]["speaker"] == word["speaker"]:
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def _utterances(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive segments of one speaker as one turn."""
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

    start, end = fit(segment["start"]), fit(segment["end"])
    clamped = {
        "start": start,
        "end": end,
        "text": segment["text"].strip(),
        "words": _in_order(segment.get("words", []), start, end),
    }
    return _with_speaker(clamped, segment.get("speaker"))


def _in_order(words: list[dict[str, Any]], low: float, high: float) -> list[dict[str, Any]]:
    """Words inside their segment, each starting where the one before ended or later: the model's
    word timings are aligned one by one and may step back or stick out of the segment."""
    ordered: list[dict[str, Any]] = []
    previous = low
    for word in words:
        start = round(min(max(word["start"], previous), high), 3)
        end = round(min(max(word["end"], start), high), 3)
        ordered.append({**word, "start": start, "end": end})
        previous = end
    return ordered


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
