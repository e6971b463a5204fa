"""Merging chunk results and rendering them."""

import json
from types import SimpleNamespace

from core.enums import TranscriptFormat
from worker.backends.base import Segment, Word
from worker.merge import merge_chunks, shift_segments
from worker.writers import render


def chunk(index, start, end, segments, language="en"):
    return SimpleNamespace(
        chunk_index=index, start_seconds=start, end_seconds=end, segments=segments, language=language
    )


def test_shift_moves_segments_and_words_onto_the_job_timeline():
    raw = [Segment(0.5, 2.0, "hello there", [Word(0.5, 1.0, " hello"), Word(1.1, 2.0, " there")])]
    shifted = shift_segments(raw, 30.0)
    assert shifted == [
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


def test_merge_orders_chunks_clamps_times_and_keeps_every_word_once():
    chunks = [
        chunk(1, 10.0, 20.0, [{"start": 10.2, "end": 20.4, "text": "second part.", "words": []}]),
        chunk(
            0,
            0.0,
            10.0,
            [
                {"start": 0.0, "end": 4.0, "text": " First part,", "words": []},
                {"start": 4.0, "end": 9.0, "text": "", "words": []},
            ],
        ),
        chunk(2, 20.0, 25.5, [{"start": 20.1, "end": 25.0, "text": "third.", "words": []}], language="fr"),
    ]
    t = merge_chunks(chunks)
    assert t.text == "First part, second part. third."
    assert [s["id"] for s in t.segments] == [0, 1, 2]
    assert t.segments[1]["end"] == 20.0  # clamped to its chunk, cannot overlap the next
    assert t.language == "en" and t.duration == 25.5


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
        ]
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
    t = merge_chunks([chunk(0, 0.0, 5.0, [])])
    assert render(t, TranscriptFormat.TXT) == ""
    assert render(t, TranscriptFormat.VTT) == "WEBVTT\n\n"
    assert json.loads(render(t, TranscriptFormat.JSON))["segments"] == []


# --- speakers ------------------------------------------------------------------------------------


def test_shift_keeps_speakers_on_segments_and_words_when_the_backend_gave_them():
    raw = [Segment(0.5, 1.0, "Hi.", [Word(0.5, 1.0, "Hi.", speaker="A")], speaker="A")]
    assert shift_segments(raw, 10.0) == [
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
    """Two chunks. The second starts with "A" again: as the provider labelled it, not merged."""
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
        ]
    )


def test_speaker_turns_join_one_speakers_segments_within_a_chunk_but_never_across_a_cut():
    t = dialogue()
    assert t.text == "Hi. How are you? Fine. Good. Bye."
    assert t.utterances == [
        {"speaker": "A", "start": 1.0, "end": 3.5, "text": "Hi. How are you?"},
        {"speaker": "A", "start": 10.5, "end": 12.0, "text": "Fine."},
        {"speaker": "B", "start": 12.5, "end": 14.0, "text": "Good."},
        {"speaker": "A", "start": 15.0, "end": 16.0, "text": "Bye."},
    ]
    assert [s["speaker"] for s in t.segments] == ["A", "A", "A", "B", "A"]


def test_a_dialogue_renders_its_speakers_in_every_format():
    t = dialogue()
    assert render(t, TranscriptFormat.TXT) == (
        "Speaker A: Hi. How are you?\nSpeaker A: Fine.\nSpeaker B: Good.\nSpeaker A: Bye.\n"
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
    t = merge_chunks([chunk(0, 0.0, 5.0, [{"start": 1.0, "end": 2.0, "text": "Hello.", "words": []}])])
    assert t.utterances == []
    body = json.loads(render(t, TranscriptFormat.JSON))
    assert "utterances" not in body and "speaker" not in body["segments"][0]
    assert render(t, TranscriptFormat.TXT) == "Hello.\n"
