"""Caption shaping over real speech: the long-form recording (231 s, one reader), transcribed once
by the bundled model with word timings, chunked and merged as the pipeline does, then rendered as
srt and vtt with the default limits (the files `merge` stores) and with tight ones."""

import re
from dataclasses import replace
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core import captions
from core.captions import CaptionLimits
from core.config import Settings
from core.enums import TranscriptFormat
from tests.conftest import shared_whisper, speech
from worker.audio import decode_pcm
from worker.backends.base import BatchTranscriber
from worker.merge import Transcript, merge_chunks, place_segments
from worker.planning import plan_windows
from worker.writers import render

LONGFORM = "longform/ljspeech_LJ001-0001_to_0032_concat.wav"
TIGHT = CaptionLimits(max_line_chars=20, max_lines=1, max_cue_seconds=3)
BRIEF = CaptionLimits(max_line_chars=80, max_lines=3, max_cue_seconds=2)  # time, not room, cuts cues
TIME = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"


@pytest.fixture(scope="module")
def longform(tmp_path_factory: pytest.TempPathFactory) -> Transcript:
    settings = Settings(environment="test", data_dir=tmp_path_factory.mktemp("data"), log_json=False)
    windows = list(plan_windows(decode_pcm(speech(LONGFORM)), settings.chunk_seconds))
    audios = [w.pcm.astype(np.float32) / 32768.0 for w in windows]
    model = shared_whisper(settings)
    assert isinstance(model, BatchTranscriber)
    results = model.transcribe_many(audios, ["en"] * len(windows), words=[True] * len(windows))
    chunks = [
        SimpleNamespace(
            chunk_index=w.index,
            start_seconds=w.start,
            end_seconds=w.end,
            segments=place_segments(r.segments, w.span_seconds, words=True),
            language=r.language,
        )
        for w, r in zip(windows, results, strict=True)
    ]
    transcript = merge_chunks(chunks, 231.0)
    assert len(transcript.text.split()) > 500 and all(s["words"] for s in transcript.segments)
    return transcript


def without_word_timings(t: Transcript) -> Transcript:
    return replace(t, segments=[{**s, "words": []} for s in t.segments])


def parsed(text: str, fmt: TranscriptFormat) -> list[tuple[float, float, list[str]]]:
    """(start, end, lines) of every cue, read back from the rendered file."""
    if fmt == TranscriptFormat.VTT:
        assert text.startswith("WEBVTT\n\n")
        text = text.removeprefix("WEBVTT\n\n")
    blocks = [b.split("\n") for b in text.rstrip("\n").split("\n\n")]
    if fmt == TranscriptFormat.SRT:
        assert [b[0] for b in blocks] == [str(i) for i in range(1, len(blocks) + 1)]
        blocks = [b[1:] for b in blocks]
    cues = []
    for timing, *lines in blocks:
        times = re.fullmatch(f"{TIME} --> {TIME}", timing)
        assert times, timing
        cues.append((seconds(times.groups()[:4]), seconds(times.groups()[4:]), lines))
    return cues


def seconds(parts) -> float:
    h, m, s, ms = (int(p) for p in parts)
    # Whole milliseconds, as written: 1 + 640/1000 in floats is 1.6400000000000001.
    return (h * 3_600_000 + m * 60_000 + s * 1000 + ms) / 1000


@pytest.mark.parametrize("fmt", [TranscriptFormat.SRT, TranscriptFormat.VTT])
@pytest.mark.parametrize("limits", [CaptionLimits(), TIGHT, BRIEF], ids=["default", "tight", "brief"])
@pytest.mark.parametrize("timed", [True, False], ids=["word-timings", "segment-timings"])
def test_longform_captions_keep_every_limit_and_every_word_whole_and_in_order(longform, fmt, limits, timed):
    transcript = longform if timed else without_word_timings(longform)
    if limits == CaptionLimits():
        text = render(transcript, fmt)  # the file `merge` stores
    else:
        text = captions.render(fmt, transcript.segments, limits)
    cues = parsed(text, fmt)
    for start, end, lines in cues:
        assert start < end <= start + limits.max_cue_seconds, (start, end, lines)
        assert 1 <= len(lines) <= limits.max_lines, lines
        # Over the limit only a line of one word may be: a word is never cut.
        assert all(len(line) <= limits.max_line_chars or " " not in line for line in lines), lines
    assert all(a[1] <= b[0] for a, b in pairwise(cues)), "cues overlap"
    shown = [w for _, _, lines in cues for line in lines for w in line.split()]
    assert shown == transcript.text.split()
    # Shaping is at work: the model's sentences (up to 12 s) are more cues than segments.
    assert len(cues) > len(transcript.segments)
    if timed:
        assert_cues_show_their_words_while_spoken(cues, transcript)


def whole_words(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whisper's words as read: one without a leading space ("-line" after " 42") continues the
    word before it."""
    whole: list[dict[str, Any]] = []
    for w in words:
        if whole and not w["text"][:1].isspace():
            before = whole[-1]
            whole[-1] = {**before, "text": before["text"] + w["text"], "end": max(before["end"], w["end"])}
        else:
            whole.append({**w, "text": w["text"].strip()})
    return whole


def assert_cues_show_their_words_while_spoken(cues, transcript: Transcript) -> None:
    """A cue runs from its first word's start (or the previous cue's end, if later) to its last
    word's end: it is cut short only when one word alone lasts longer than a cue may."""
    said = [w for s in transcript.segments for w in whole_words(s["words"])]
    assert [w["text"] for w in said] == transcript.text.split()
    previous_end = 0.0
    for start, end, lines in cues:
        count = sum(len(line.split()) for line in lines)
        words, said = said[:count], said[count:]
        assert start == max(round(words[0]["start"], 3), previous_end), (start, lines)
        assert end == round(max(w["end"] for w in words), 3) or count == 1, (end, lines)
        previous_end = end
