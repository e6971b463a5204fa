"""Caption shaping: lines, cues and their times, from segments with and without word timings."""

import json
import random
import re
from itertools import pairwise

import pytest

from core.captions import CaptionLimits, Cue, cues, render_stored, srt, vtt
from core.enums import TranscriptFormat

SRT_SPEAKER = "[{}] "


def word(start, end, text):
    return {"start": start, "end": end, "text": text}


def timed(*words, speaker=None):
    """A segment as `worker.merge` stores it, its text joined from Whisper's space-led words."""
    segment = {
        "start": words[0]["start"],
        "end": words[-1]["end"],
        "text": "".join(w["text"] for w in words).strip(),
        "words": list(words),
    }
    return {**segment, "speaker": speaker} if speaker else segment


def untimed(start, end, text, speaker=None):
    segment = {"start": start, "end": end, "text": text, "words": []}
    return {**segment, "speaker": speaker} if speaker else segment


def evenly(text, start=0.0, seconds_per_word=0.5):
    """Whisper-like words (leading spaces), one after another."""
    return [
        word(start + i * seconds_per_word, start + (i + 1) * seconds_per_word, f" {w}")
        for i, w in enumerate(text.split())
    ]


FOX = evenly("The quick brown fox jumps over the lazy dog.")


def without_speaker(line: str) -> str:
    return re.sub(r"^\[Speaker \w+\] ", "", line)


def shown_words(shaped: list[Cue]) -> list[str]:
    return [w for cue in shaped for line in cue.lines for w in without_speaker(line).split()]


def assert_shaped(shaped: list[Cue], limits: CaptionLimits) -> None:
    """The promises every cue keeps (a line may run over only when it holds one word)."""
    for cue in shaped:
        assert 0 <= cue.start_ms < cue.end_ms <= cue.start_ms + limits.max_cue_seconds * 1000, cue
        assert 1 <= len(cue.lines) <= limits.max_lines, cue
        for line in cue.lines:
            assert len(line) <= limits.max_line_chars or len(without_speaker(line).split()) == 1, cue
    for before, after in pairwise(shaped):
        assert before.end_ms <= after.start_ms


def test_timed_words_fill_lines_then_cues_and_a_cue_spans_its_first_to_its_last_word():
    limits = CaptionLimits(max_line_chars=20, max_lines=2, max_cue_seconds=7)
    assert srt([timed(*FOX)], limits) == (
        "1\n00:00:00,000 --> 00:00:02,500\nThe quick brown\nfox jumps\n\n"
        "2\n00:00:02,500 --> 00:00:04,500\nover the lazy dog.\n"
    )


def test_cues_and_lines_are_even_where_filling_each_to_the_brim_would_leave_a_word_alone():
    # Filled to the brim: "The quick brown fox" / "jumps over the lazy", then "dog." alone.
    limits = CaptionLimits(max_line_chars=20, max_lines=2, max_cue_seconds=7)
    assert [c.lines for c in cues([timed(*FOX)], limits, SRT_SPEAKER)] == [
        ("The quick brown", "fox jumps"),
        ("over the lazy dog.",),
    ]
    # Lines too: "The quick brown fox jumps over the" fills 40 characters, leaving "lazy dog.".
    wide = CaptionLimits(max_line_chars=40, max_lines=2)
    assert [c.lines for c in cues([timed(*FOX)], wide, SRT_SPEAKER)] == [
        ("The quick brown fox jumps", "over the lazy dog."),
    ]


def test_a_cue_ends_before_it_would_last_longer_than_max_cue_seconds():
    limits = CaptionLimits(max_line_chars=200, max_lines=10, max_cue_seconds=2)
    shaped = cues([timed(*FOX)], limits, SRT_SPEAKER)
    # 0.5 s a word: four words fill 2 s, so nine words take three cues (evened out).
    assert [(c.start_ms, c.end_ms, c.lines) for c in shaped] == [
        (0, 1500, ("The quick brown",)),
        (1500, 3000, ("fox jumps over",)),
        (3000, 4500, ("the lazy dog.",)),
    ]


def test_a_word_longer_than_a_line_stands_alone_on_its_line_whole():
    limits = CaptionLimits(max_line_chars=10, max_lines=2)
    segment = timed(*evenly("a Supercalifragilistic word here"))
    assert [c.lines for c in cues([segment], limits, SRT_SPEAKER)] == [
        ("a", "Supercalifragilistic"),
        ("word here",),
    ]


def test_whisper_words_without_a_leading_space_continue_the_word_before_and_are_never_cut_from_it():
    # Whisper may split "don't" into " don" + "'t": one word on screen.
    words = [word(0.0, 0.3, " I"), word(0.3, 0.6, " don"), word(0.6, 0.8, "'t"), word(0.8, 1.2, " know")]
    limits = CaptionLimits(max_line_chars=10, max_lines=1)
    shaped = cues([timed(*words)], limits, SRT_SPEAKER)
    assert [c.lines for c in shaped] == [("I don't",), ("know",)]
    assert (shaped[0].end_ms, shaped[1].start_ms) == (800, 800)


def test_bare_words_of_a_hosted_backend_are_each_a_word():
    words = [word(0.0, 0.4, "Ask"), word(0.4, 0.8, "not."), word(1.0, 1.5, "Ask")]
    segment = {"start": 0.0, "end": 1.5, "text": "Ask not. Ask", "words": words}
    assert [c.lines for c in cues([segment], CaptionLimits(max_line_chars=10), SRT_SPEAKER)] == [
        ("Ask not.", "Ask")
    ]


def test_the_speaker_prefix_opens_every_cue_of_its_segment_and_counts_toward_the_line():
    limits = CaptionLimits(max_line_chars=30, max_lines=1)
    # Without the prefix, two cues would do: "The quick brown fox jumps over" is 30 characters.
    assert [c.lines for c in cues([timed(*FOX, speaker="B")], limits, SRT_SPEAKER)] == [
        ("[Speaker B] The quick brown",),
        ("[Speaker B] fox jumps over",),
        ("[Speaker B] the lazy dog.",),
    ]


def test_vtt_counts_its_voice_span_toward_the_line():
    limits = CaptionLimits(max_line_chars=20, max_lines=2)
    assert vtt([timed(*evenly("Hi there friend"), speaker="A")], limits) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n<v Speaker A>Hi\nthere friend\n"
    )


def test_a_cue_never_holds_two_segments_or_two_speakers():
    segments = [untimed(0.0, 1.0, "Hi.", "A"), untimed(1.0, 2.0, "Hello.", "B"), untimed(2.0, 3.0, "Bye.")]
    shaped = cues(segments, CaptionLimits(), SRT_SPEAKER)
    assert [c.lines for c in shaped] == [("[Speaker A] Hi.",), ("[Speaker B] Hello.",), ("Bye.",)]


def test_a_segment_without_word_timings_spreads_its_times_over_its_text():
    # 40 characters over 4 s: "bbbb" starts at character 20, 2 s in; the cue of one line ends at
    # the end of the last word it holds.
    segment = untimed(10.0, 14.0, "aaaaaaaaa bbbbbbbbb cccccccccc ddddddddd")
    shaped = cues([segment], CaptionLimits(max_line_chars=20, max_lines=1), SRT_SPEAKER)
    assert [(c.start_ms, c.end_ms, c.lines) for c in shaped] == [
        (10000, 11900, ("aaaaaaaaa bbbbbbbbb",)),
        (12000, 14000, ("cccccccccc ddddddddd",)),
    ]


def test_a_short_segment_without_words_keeps_its_own_times():
    assert srt([untimed(1.0, 2.5, "Hello.")], CaptionLimits()) == "1\n00:00:01,000 --> 00:00:02,500\nHello.\n"


def test_cues_never_overlap_and_always_last():
    segments = [
        timed(word(0.0, 1.2, " One"), word(1.2, 2.0, " two.")),
        # A backend's next segment that starts before the last one ended, and a word of no length.
        timed(word(1.5, 2.5, " Three"), word(2.5, 2.5, " four.")),
        timed(word(2.5, 2.5, " Five.")),
    ]
    shaped = cues(segments, CaptionLimits(max_line_chars=10, max_lines=1), SRT_SPEAKER)
    assert [(c.start_ms, c.end_ms, c.lines) for c in shaped] == [
        (0, 2000, ("One two.",)),
        (2000, 2500, ("Three",)),
        (2500, 2501, ("four.",)),
        (2501, 2502, ("Five.",)),
    ]


def test_one_word_lasting_longer_than_a_cue_may_is_cut_to_max_cue_seconds():
    segment = timed(word(3.0, 15.0, " Hmmmmmm."), word(15.0, 15.5, " Yes."))
    shaped = cues([segment], CaptionLimits(max_cue_seconds=5), SRT_SPEAKER)
    assert [(c.start_ms, c.end_ms, c.lines) for c in shaped] == [
        (3000, 8000, ("Hmmmmmm.",)),
        (15000, 15500, ("Yes.",)),
    ]


@pytest.mark.parametrize("seed", range(20))
def test_random_transcripts_keep_every_promise_and_every_word_in_order(seed):
    rng = random.Random(seed)
    limits = CaptionLimits(rng.randint(10, 60), rng.randint(1, 4), rng.uniform(1, 10))
    vocabulary = ["a", "to", "the", "caption", "overlapping", "words,", "extraordinarily-long-word."]
    segments, t = [], 0.0
    for _ in range(rng.randint(1, 8)):
        texts = [rng.choice(vocabulary) for _ in range(rng.randint(1, 30))]
        speaker = rng.choice([None, "A", "B"])
        if rng.random() < 0.5:
            words = []
            for text in texts:
                start = t + rng.uniform(-0.2, 0.3)  # sometimes before the previous word ended
                words.append(word(start, start + rng.uniform(0, 3), f" {text}"))
                t = words[-1]["end"]
            segments.append(timed(*words, speaker=speaker))
        else:
            end = t + rng.uniform(0.5, 30)
            segments.append(untimed(t, end, " ".join(texts), speaker))
            t = end
    shaped = cues(segments, limits, SRT_SPEAKER)
    assert_shaped(shaped, limits)
    assert shown_words(shaped) == [w for s in segments for w in s["text"].split()]
    # Every cue of a labelled segment names its speaker, and only its speaker.
    named = [m.group(1) if (m := re.match(r"\[Speaker (\w+)\] ", c.lines[0])) else None for c in shaped]
    assert named == [s.get("speaker") for s in segments for _ in cues([s], limits, SRT_SPEAKER)]


def test_captions_render_from_the_stored_json_transcript():
    stored = json.dumps({"text": "x", "segments": [timed(*FOX)]}).encode()
    limits = CaptionLimits(max_line_chars=20)
    assert render_stored(stored, TranscriptFormat.SRT, limits) == srt([timed(*FOX)], limits)
    assert render_stored(stored, TranscriptFormat.VTT, limits) == vtt([timed(*FOX)], limits)
    with pytest.raises(ValueError, match="txt is not a caption format"):
        render_stored(stored, TranscriptFormat.TXT, limits)
