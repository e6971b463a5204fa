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
