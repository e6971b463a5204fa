"""Render a merged transcript as txt, srt, vtt or json.

A transcript with speaker labels names them: one `Speaker A: …` line per turn in txt, `[Speaker A]`
before a cue's text in srt, a voice span `<v Speaker A>` in vtt, and `utterances` plus `speaker` on
segments and words in json. Without labels, no format names a speaker.

srt and vtt are shaped for reading with the default limits (`core.captions`: lines of at most 42
characters, cues of at most two lines and 7 s); the API renders other limits from the stored json.
"""

import json
from collections.abc import Callable
from typing import Any

from core import captions
from core.captions import CaptionLimits, speaker_name
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
    prefix = template.format(speaker_name(speaker)) if speaker else ""
    return f"{prefix}{item['text']}"


def _srt(t: Transcript) -> str:
    return captions.srt(t.segments, CaptionLimits())


def _vtt(t: Transcript) -> str:
    return captions.vtt(t.segments, CaptionLimits())


def _json(t: Transcript) -> str:
    body: dict[str, Any] = {
        "text": t.text,
        "language": t.language,
        "language_probability": t.language_probability,
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
