"""Render a merged transcript as txt, srt, vtt or json.

A transcript with speaker labels names them: one `Speaker A: …` line per turn in txt, `[Speaker A]`
before a cue's text in srt, a voice span `<v Speaker A>` in vtt, and `utterances` plus `speaker` on
segments and words in json. Without labels, every format is exactly as it always was.
"""

import json
from collections.abc import Callable
from typing import Any

from core.enums import TranscriptFormat
from worker.merge import Transcript


def render(transcript: Transcript, fmt: TranscriptFormat) -> str:
    return _RENDERERS[fmt](transcript)


def _txt(t: Transcript) -> str:
    if t.utterances:
        return "".join(f"{_prefixed(u, '{}: ')}\n" for u in t.utterances)
    return t.text + "\n" if t.text else ""


def _prefixed(item: dict[str, Any], template: str) -> str:
    """The text, after its speaker's name put in `template` (nothing when it has no speaker)."""
    speaker = item.get("speaker")
    prefix = template.format(f"Speaker {speaker}") if speaker else ""
    return f"{prefix}{item['text']}"


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(t: Transcript, separator: str, speaker: str) -> list[str]:
    """`speaker` is the template a cue's speaker name goes in, before its text."""
    return [
        f"{_timestamp(s['start'], separator)} --> {_timestamp(s['end'], separator)}\n"
        f"{_prefixed(s, speaker)}\n"
        for s in t.segments
    ]


def _srt(t: Transcript) -> str:
    return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(_cues(t, ",", "[{}] "), start=1))


def _vtt(t: Transcript) -> str:
    # A WebVTT voice span: players show or style the speaker; the span needs no closing tag.
    return "WEBVTT\n\n" + "\n".join(_cues(t, ".", "<v {}>"))


def _json(t: Transcript) -> str:
    body: dict[str, Any] = {
        "text": t.text,
        "language": t.language,
        "duration": t.duration,
        "segments": t.segments,
    }
    if t.utterances:
        body["utterances"] = t.utterances
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


_RENDERERS: dict[TranscriptFormat, Callable[[Transcript], str]] = {
    TranscriptFormat.TXT: _txt,
    TranscriptFormat.SRT: _srt,
    TranscriptFormat.VTT: _vtt,
    TranscriptFormat.JSON: _json,
}
