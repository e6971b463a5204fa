"""Captions (srt, vtt) from transcript segments, shaped for reading.

One home for caption shaping, in `core` because both the worker (the files it stores at merge, with
the default limits) and the API (`GET .../transcript?format=srt&max_line_chars=…`, rendered from the
stored json transcript) render captions, and neither imports the other.

A segment's words go into lines of at most `max_line_chars` characters and cues of at most
`max_lines` lines lasting at most `max_cue_seconds`: as few cues (and lines) as those limits allow,
evened out, so that no word is left alone at the end of a sentence. Rules, and why:

- A cue never spans two segments: a segment is one speaker's sentence (or turn), and a caption
  showing two speakers at once would misattribute one of them.
- Lines break only between words, never inside one. A single word longer than a line (with the
  speaker prefix, when it opens a cue) stands alone on its line, which is then the one kind of line
  over `max_line_chars`: cutting the word would garble it.
- A cue runs from its first word's start to its last word's end (word timings). A segment without
  word timings has its times spread over its text by character position, a fair guess for speech.
- Cues never overlap and always last: each starts no earlier than the previous one ended, ends
  after it starts, and is cut to `max_cue_seconds` when one word alone lasts longer.
- The speaker prefix, as rendered (`[Speaker A] ` in srt, the voice span `<v Speaker A>` in vtt),
  opens every cue of a labelled segment and counts toward its first line's length.
"""

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.enums import TranscriptFormat

# What a caller may ask for (422 beyond them): a line holds at least a short word, a cue shows long
# enough to be read.
LINE_CHARS_RANGE = (10, 200)
LINES_RANGE = (1, 10)
CUE_SECONDS_RANGE = (1.0, 60.0)

CAPTION_FORMATS = (TranscriptFormat.SRT, TranscriptFormat.VTT)


@dataclass(frozen=True)
class CaptionLimits:
    """The defaults are common broadcast practice (42 characters, two lines, 7 seconds)."""

    max_line_chars: int = 42
    max_lines: int = 2
    max_cue_seconds: float = 7.0


@dataclass(frozen=True)
class Cue:
    """Times in milliseconds, as both formats write them."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class _Word:
    text: str
    start: float
    end: float


# Whether a part (words, and their size: each word's length and one space) is allowed.
_Fits = Callable[[list[_Word], int], bool]


def speaker_name(speaker: str) -> str:
    return f"Speaker {speaker}"


def render(fmt: TranscriptFormat, segments: list[dict[str, Any]], limits: CaptionLimits) -> str:
    if fmt == TranscriptFormat.SRT:
        return srt(segments, limits)
    if fmt == TranscriptFormat.VTT:
        return vtt(segments, limits)
    raise ValueError(f"{fmt.value} is not a caption format")


def render_stored(stored_json: bytes, fmt: TranscriptFormat, limits: CaptionLimits) -> str:
    """Captions from a transcript as the json format stores it (its `segments`)."""
    return render(fmt, json.loads(stored_json).get("segments") or [], limits)


def srt(segments: list[dict[str, Any]], limits: CaptionLimits) -> str:
    blocks = (_block(c, ",") for c in cues(segments, limits, "[{}] "))
    return "\n".join(f"{i}\n{block}" for i, block in enumerate(blocks, start=1))


def vtt(segments: list[dict[str, Any]], limits: CaptionLimits) -> str:
    # A WebVTT voice span: players show or style the speaker; the span needs no closing tag.
    return "WEBVTT\n\n" + "\n".join(_block(c, ".") for c in cues(segments, limits, "<v {}>"))


def cues(segments: list[dict[str, Any]], limits: CaptionLimits, speaker_template: str) -> list[Cue]:
    """Every segment's cues, in order, none overlapping. `speaker_template` is where a labelled
    segment's speaker name goes, before the first line of each of its cues."""
    longest = int(limits.max_cue_seconds * 1000)  # never a millisecond over the limit
    shaped: list[Cue] = []
    previous_end = 0
    for segment in segments:
        prefix = speaker_template.format(speaker_name(segment["speaker"])) if segment.get("speaker") else ""
        for words, lines in _Packer(limits, prefix).cues(_words(segment)):
            start = max(_ms(words[0].start), previous_end)
            end = min(max(_ms(max(w.end for w in words)), start + 1), start + longest)
            shaped.append(Cue(start, end, lines))
            previous_end = end
    return shaped


@dataclass(frozen=True)
class _Packer:
    """One segment's words into cues of lines, within `limits`."""

    limits: CaptionLimits
    prefix: str

    def cues(self, words: list[_Word]) -> Iterator[tuple[list[_Word], tuple[str, ...]]]:
        for cue in _even_parts(words, self._cue_fits):
            yield cue, tuple(self._text(line, first=line[0] is cue[0]) for line in self._lines(cue))

    def _cue_fits(self, cue: list[_Word], _: int) -> bool:
        seconds = max(w.end for w in cue) - cue[0].start
        # Evening out never takes more lines than filling them to the brim: the fewest is enough.
        lines = _fill(cue, self._line_fits(cue))
        return seconds <= self.limits.max_cue_seconds and len(lines) <= self.limits.max_lines

    def _lines(self, cue: list[_Word]) -> list[list[_Word]]:
        return _even_parts(cue, self._line_fits(cue))

    def _line_fits(self, cue: list[_Word]) -> _Fits:
        def fits(line: list[_Word], size: int) -> bool:
            prefix = len(self.prefix) if line[0] is cue[0] else 0
            return prefix + size - 1 <= self.limits.max_line_chars

        return fits

    def _text(self, line: list[_Word], *, first: bool) -> str:
        """The line as shown: the speaker prefix opens a cue's first line."""
        return (self.prefix if first else "") + " ".join(w.text for w in line)


def _even_parts(words: list[_Word], fits: _Fits) -> list[list[_Word]]:
    """The words in order, in the fewest parts that `fits` allows, as even in length as that allows:
    filling each part to the brim would often leave a word or two alone in the last one. A part of
    one word is always allowed (a word is never cut)."""
    brimful = _fill(words, fits)
    even = _fill(words, fits, budget=_size(words) / len(brimful)) if len(brimful) > 1 else brimful
    return even if len(even) <= len(brimful) else brimful


def _fill(words: list[_Word], fits: _Fits, budget: float | None = None) -> list[list[_Word]]:
    """Each part takes words while they fit and, given a `budget` of characters, while taking the
    next word comes nearer to the budget than leaving it out."""
    parts: list[list[_Word]] = []
    size = 0  # of the last part
    for word in words:
        within = budget is None or size + len(word.text) / 2 <= budget
        if parts and within and fits([*parts[-1], word], size + len(word.text) + 1):
            parts[-1].append(word)
            size += len(word.text) + 1
        else:
            parts.append([word])
            size = len(word.text) + 1
    return parts


def _size(words: list[_Word]) -> int:
    return sum(len(w.text) + 1 for w in words)


def _words(segment: dict[str, Any]) -> list[_Word]:
    timed = [w for w in segment.get("words") or [] if w["text"].strip()]
    return _timed(timed) if timed else _spread(segment)


def _timed(words: list[dict[str, Any]]) -> list[_Word]:
    """Whisper's words carry their own leading space, so one without it continues the word before
    (a line never breaks there); a hosted backend's words are bare, each a word of its own. The
    same reading as `worker.merge`, which joins a segment's text from its words."""
    spaced = any(w["text"][:1].isspace() for w in words)
    joined: list[_Word] = []
    for w in words:
        text = w["text"].strip()
        if spaced and joined and not w["text"][:1].isspace():
            last = joined[-1]
            joined[-1] = _Word(last.text + text, last.start, max(last.end, w["end"]))
        else:
            joined.append(_Word(text, w["start"], w["end"]))
    return joined


def _spread(segment: dict[str, Any]) -> list[_Word]:
    """The segment's words, timed by where they sit in its text."""
    text, start, end = segment["text"], segment["start"], segment["end"]
    per_char = (end - start) / max(len(text), 1)
    return [
        _Word(m.group(), start + m.start() * per_char, start + m.end() * per_char)
        for m in re.finditer(r"\S+", text)
    ]


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _timestamp(millis: int, separator: str) -> str:
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _block(cue: Cue, separator: str) -> str:
    lines = "\n".join(cue.lines)
    return f"{_timestamp(cue.start_ms, separator)} --> {_timestamp(cue.end_ms, separator)}\n{lines}\n"
