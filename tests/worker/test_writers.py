"""Placing chunk results on the job's timeline, merging them, and rendering the transcript."""

import json
from itertools import pairwise
from types import SimpleNamespace

import pytest

from core.enums import TranscriptFormat
from worker.backends.base import Segment, Word
from worker.merge import (
    SEGMENT_MAX_SECONDS,
    SEGMENT_PAUSE_SECONDS,
    merge_chunks,
    needs_word_timings,
    place_segments,
)
from worker.writers import render


def chunk(index, start, end, segments, language="en"):
    return SimpleNamespace(
        chunk_index=index, start_seconds=start, end_seconds=end, segments=segments, language=language
    )


# --- placing a chunk's segments on the job's timeline ---------------------------------------------


def test_one_span_moves_segments_and_words_onto_the_job_timeline():
    raw = [Segment(0.5, 2.0, "hello there", [Word(0.5, 1.0, " hello"), Word(1.1, 2.0, " there")])]
    assert place_segments(raw, [[30.0, 45.0]], words=True) == [
        {
            "start": 30.5,
            "end": 32.0,
            "text": "hello there",
            "words": [
                {"start": 30.5, "end": 31.0, "text": " hello"},
                {"start": 31.1, "end": 32.0, "text": " there"},
            ],
        }
    ]


def test_a_segment_without_words_keeps_its_times_through_the_spans():
    # The model heard 0-5 s then 20-25 s back to back: window time 3 is 3 s, window time 7 is 22 s.
    raw = [Segment(3.0, 7.0, "across the gap", [])]
    assert place_segments(raw, [[0.0, 5.0], [20.0, 25.0]], words=True) == [
        {"start": 3.0, "end": 22.0, "text": "across the gap", "words": []}
    ]


def test_at_a_join_a_start_belongs_to_the_later_span_and_an_end_to_the_earlier():
    raw = [Segment(0.0, 2.0, "first", []), Segment(2.0, 3.0, "second", [])]
    placed = place_segments(raw, [[10.0, 12.0], [40.0, 41.0]], words=False)
    assert [(s["start"], s["end"]) for s in placed] == [(10.0, 12.0), (40.0, 41.0)]


def test_a_time_past_the_chunks_audio_stays_at_its_last_span_end():
    # Whisper may say 30.0 for a window shorter than 30 s.
    raw = [Segment(1.0, 30.0, "to the end", [])]
    placed = place_segments(raw, [[100.0, 104.0], [110.0, 112.5]], words=False)
    assert (placed[0]["start"], placed[0]["end"]) == (101.0, 112.5)


def test_timed_words_cut_a_segment_where_the_model_heard_two_stretches_apart():
    spans = [[0.0, 5.0], [20.0, 25.0]]
    words = [Word(3.0, 3.6, " we"), Word(3.6, 4.8, " choose"), Word(5.1, 5.6, " to"), Word(5.6, 6.2, " go")]
    placed = place_segments([Segment(0.0, 6.2, "we choose to go", words)], spans, words=False)
    # No punctuation between "choose" and "to": only the 15 s the model never heard separates them.
    assert placed == [
        {"start": 3.0, "end": 4.8, "text": "we choose", "words": []},
        {"start": 20.1, "end": 21.2, "text": "to go", "words": []},
    ]


def test_timed_words_cut_a_segment_at_sentence_ends_and_pauses():
    words = [
        Word(0.0, 0.5, " Ask", probability=0.9),
        Word(0.5, 1.0, " not."),
        Word(1.2, 1.6, " What"),
        Word(1.6 + SEGMENT_PAUSE_SECONDS, 3.0, " your"),
        Word(3.0, 3.4, " country?"),
    ]
    placed = place_segments([Segment(0.0, 3.4, "Ask not. What your country?", words)], [[50, 60]], words=True)
    assert [(s["start"], s["end"], s["text"]) for s in placed] == [
        (50.0, 51.0, "Ask not."),
        (51.2, 51.6, "What"),
        (52.6, 53.4, "your country?"),
    ]
    assert placed[0]["words"][0] == {"start": 50.0, "end": 50.5, "text": " Ask", "probability": 0.9}
    assert [w["text"] for s in placed for w in s["words"]] == [w.text for w in words]


def test_a_long_unpunctuated_run_of_words_is_cut_at_the_longest_segment():
    words = [Word(i * 0.5, i * 0.5 + 0.4, f" w{i}") for i in range(60)]  # 30 s, no pause, no stop
    placed = place_segments([Segment(0.0, 30.0, "…", words)], [[0.0, 30.0]], words=False)
    assert len(placed) >= 3
    assert all(s["end"] - s["start"] <= SEGMENT_MAX_SECONDS for s in placed)
    assert " ".join(s["text"] for s in placed) == " ".join(f"w{i}" for i in range(60))


def test_words_false_keeps_the_words_out_of_the_result_but_still_places_by_them():
    words = [Word(4.0, 4.9, " one."), Word(5.2, 5.8, " two.")]
    placed = place_segments([Segment(0.0, 6.0, "one. two.", words)], [[0.0, 5.0], [9.0, 12.0]], words=False)
    assert placed == [
        {"start": 4.0, "end": 4.9, "text": "one.", "words": []},
        {"start": 9.2, "end": 9.8, "text": "two.", "words": []},
    ]


def test_bare_words_of_a_hosted_backend_keep_the_spaces_between_them():
    # Whisper's words carry their leading space (" Ask"); AssemblyAI's do not ("Ask").
    words = [Word(0.0, 0.3, "Ask"), Word(0.3, 0.6, "not"), Word(0.6, 1.0, "what."), Word(1.2, 1.5, "Go")]
    placed = place_segments([Segment(0.0, 1.5, "Ask not what. Go", words)], [[5.0, 15.0]], words=False)
    assert [s["text"] for s in placed] == ["Ask not what.", "Go"]


def test_a_chunk_joining_distant_stretches_needs_word_timings_to_be_placed():
    assert not needs_word_timings([[0.0, 30.0]])
    assert not needs_word_timings([[0.0, 5.0], [5.0 + SEGMENT_PAUSE_SECONDS - 0.01, 9.0]])
    assert needs_word_timings([[0.0, 5.0], [5.0 + SEGMENT_PAUSE_SECONDS, 9.0]])
    assert needs_word_timings([[0.0, 1.0], [1.1, 2.0], [40.0, 41.0]])


# --- merging -------------------------------------------------------------------------------------


def test_merge_orders_chunks_clamps_times_and_keeps_every_word_once():
    # Chunks hold speech only: silences between them (9.5-12 s, 20-31 s) belong to no chunk.
    chunks = [
        chunk(1, 12.0, 20.0, [{"start": 12.2, "end": 31.4, "text": "second part.", "words": []}]),
        chunk(
            0,
            0.0,
            9.5,
            [
                {"start": 0.0, "end": 4.0, "text": " First part,", "words": []},
                {"start": 4.0, "end": 9.0, "text": "", "words": []},
            ],
        ),
        chunk(2, 31.0, 35.5, [{"start": 30.9, "end": 35.0, "text": "third.", "words": []}], language="fr"),
    ]
    t = merge_chunks(chunks, 40.0)
    assert t.text == "First part, second part. third."
    assert [s["id"] for s in t.segments] == [0, 1, 2]
    assert t.segments[1]["end"] == 20.0  # clamped to its chunk, cannot overlap the next
    assert t.segments[2]["start"] == 31.0  # nor begin in the one before
    ends = [(s["start"], s["end"]) for s in t.segments]
    assert all(a[1] <= b[0] for a, b in pairwise(ends))
    # The job's decoded duration, trailing silence included, not where its last chunk of speech ends.
    assert t.language == "en" and t.duration == 40.0


def test_a_file_without_speech_merges_into_an_empty_transcript_of_its_length():
    t = merge_chunks([], 12.5)
    assert (t.text, t.segments, t.utterances, t.language, t.duration) == ("", [], [], None, 12.5)
    assert render(t, TranscriptFormat.TXT) == ""
    assert render(t, TranscriptFormat.SRT) == ""
    assert json.loads(render(t, TranscriptFormat.JSON))["duration"] == 12.5


def test_renderers():
    t = merge_chunks(
        [
            chunk(
                0,
                0.0,
                3725.5,
                [
                    {"start": 1.0, "end": 2.5, "text": "Hello.", "words": []},
                    {"start": 3661.25, "end": 3662.0, "text": "An hour later.", "words": []},
                ],
            )
        ],
        3725.5,
    )
    assert render(t, TranscriptFormat.TXT) == "Hello. An hour later.\n"
    assert render(t, TranscriptFormat.SRT) == (
        "1\n00:00:01,000 --> 00:00:02,500\nHello.\n\n2\n01:01:01,250 --> 01:01:02,000\nAn hour later.\n"
    )
    assert render(t, TranscriptFormat.VTT) == (
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello.\n\n01:01:01.250 --> 01:01:02.000\nAn hour later.\n"
    )
    body = json.loads(render(t, TranscriptFormat.JSON))
    assert body["text"] == "Hello. An hour later." and body["duration"] == 3725.5
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(1.0, 2.5), (3661.25, 3662.0)]


def test_an_empty_transcript_renders_empty_files():
    t = merge_chunks([chunk(0, 0.0, 5.0, [])], 5.0)
    assert render(t, TranscriptFormat.TXT) == ""
    assert render(t, TranscriptFormat.VTT) == "WEBVTT\n\n"
    assert json.loads(render(t, TranscriptFormat.JSON))["segments"] == []


# --- speakers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_words", [True, False])
def test_placing_keeps_speakers_on_segments_and_words_when_the_backend_gave_them(keep_words):
    # A labelled segment is the provider's turn: word timings never cut it into sentences.
    raw = [
        Segment(0.5, 2.5, "Hi. Bye.", [Word(0.5, 1.0, "Hi.", "A"), Word(2.0, 2.5, "Bye.", "A")], speaker="A")
    ]
    placed = place_segments(raw, [[10.0, 12.0], [30.0, 40.0]], words=keep_words)
    words = [
        {"start": 10.5, "end": 11.0, "text": "Hi.", "speaker": "A"},
        {"start": 30.0, "end": 30.5, "text": "Bye.", "speaker": "A"},
    ]
    assert placed == [
        {"start": 10.5, "end": 30.5, "text": "Hi. Bye.", "words": words if keep_words else [], "speaker": "A"}
    ]


def test_placing_keeps_speakers_on_a_contiguous_chunk():
    raw = [Segment(0.5, 1.0, "Hi.", [Word(0.5, 1.0, "Hi.", speaker="A")], speaker="A")]
    assert place_segments(raw, [[10.0, 20.0]], words=True) == [
        {
            "start": 10.5,
            "end": 11.0,
            "text": "Hi.",
            "words": [{"start": 10.5, "end": 11.0, "text": "Hi.", "speaker": "A"}],
            "speaker": "A",
        }
    ]


def said(start, end, text, speaker):
    return {"start": start, "end": end, "text": text, "speaker": speaker, "words": []}


def dialogue():
    """Two chunks whose letters are the job's (`worker.speakers` links them): "A" speaks on across
    the cut."""
    return merge_chunks(
        [
            chunk(0, 0.0, 10.0, [said(1.0, 2.0, "Hi.", "A"), said(2.0, 3.5, "How are you?", "A")]),
            chunk(
                1,
                10.0,
                20.0,
                [
                    said(10.5, 12.0, "Fine.", "A"),
                    said(12.5, 14.0, "Good.", "B"),
                    said(15.0, 16.0, "Bye.", "A"),
                ],
            ),
        ],
        20.0,
    )


def test_speaker_turns_join_one_speakers_consecutive_segments_across_a_cut_too():
    t = dialogue()
    assert t.text == "Hi. How are you? Fine. Good. Bye."
    assert t.utterances == [
        {"speaker": "A", "start": 1.0, "end": 12.0, "text": "Hi. How are you? Fine."},
        {"speaker": "B", "start": 12.5, "end": 14.0, "text": "Good."},
        {"speaker": "A", "start": 15.0, "end": 16.0, "text": "Bye."},
    ]
    assert [s["speaker"] for s in t.segments] == ["A", "A", "A", "B", "A"]


def test_a_dialogue_renders_its_speakers_in_every_format():
    t = dialogue()
    assert render(t, TranscriptFormat.TXT) == (
        "Speaker A: Hi. How are you? Fine.\nSpeaker B: Good.\nSpeaker A: Bye.\n"
    )
    srt = render(t, TranscriptFormat.SRT)
    assert srt.startswith("1\n00:00:01,000 --> 00:00:02,000\n[Speaker A] Hi.\n\n2\n")
    assert "4\n00:00:12,500 --> 00:00:14,000\n[Speaker B] Good.\n" in srt
    vtt = render(t, TranscriptFormat.VTT)
    assert vtt.startswith("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v Speaker A>Hi.\n\n")
    assert "00:00:12.500 --> 00:00:14.000\n<v Speaker B>Good.\n" in vtt
    body = json.loads(render(t, TranscriptFormat.JSON))
    assert body["utterances"] == t.utterances
    assert [s["speaker"] for s in body["segments"]] == ["A", "A", "A", "B", "A"]


def test_one_voice_transcripts_have_no_speaker_fields():
    t = merge_chunks([chunk(0, 0.0, 5.0, [{"start": 1.0, "end": 2.0, "text": "Hello.", "words": []}])], 5.0)
    assert t.utterances == []
    body = json.loads(render(t, TranscriptFormat.JSON))
    assert "utterances" not in body and "speaker" not in body["segments"][0]
    assert render(t, TranscriptFormat.TXT) == "Hello.\n"
