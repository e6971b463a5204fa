"""Render a merged transcript as txt, srt, vtt or json."""

import json
from collections.abc import Callable

from core.enums import TranscriptFormat
from worker.merge import Transcript


def render(transcript: Transcript, fmt: TranscriptFormat) -> str:
    return _RENDERERS[fmt](transcript)


def _txt(t: Transcript) -> str:
    return t.text + "\n" if t.text else ""


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(t: Transcript, separator: str) -> list[str]:
    return [
        f"{_timestamp(s['start'], separator)} --> {_timestamp(s['end'], separator)}\n{s['text']}\n"
        for s in t.segments
    ]


def _srt(t: Transcript) -> str:
    return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(_cues(t, ","), start=1))


def _vtt(t: Transcript) -> str:
    return "WEBVTT\n\n" + "\n".join(_cues(t, "."))


def _json(t: Transcript) -> str:
    body = {"text": t.text, "language": t.language, "duration": t.duration, "segments": t.segments}
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


_RENDERERS: dict[TranscriptFormat, Callable[[Transcript], str]] = {
    TranscriptFormat.TXT: _txt,
    TranscriptFormat.SRT: _srt,
    TranscriptFormat.VTT: _vtt,
    TranscriptFormat.JSON: _json,
}
