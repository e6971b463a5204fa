"""`GET /v1/jobs/{id}/transcript?format=srt|vtt` with `max_line_chars`, `max_lines` and
`max_cue_seconds`: captions shaped from the stored json transcript, and a 422 naming a bad one."""

import re
from types import SimpleNamespace

import pytest

from core.enums import JobStatus, TranscriptFormat
from storage.factory import make_storage
from storage.keys import transcript_key
from tests.conftest import auth, create_job_row, create_user
from worker.merge import Transcript, merge_chunks
from worker.writers import render

SENTENCE = "And so, my fellow Americans, ask not what your country can do for you."


def words(text, start, seconds_per_word=0.4):
    """Whisper-like words: each carries its leading space."""
    return [
        {"start": start + i * seconds_per_word, "end": start + (i + 1) * seconds_per_word, "text": f" {w}"}
        for i, w in enumerate(text.split())
    ]


def segment(text, start, speaker=None):
    timed = words(text, start)
    said = {"start": timed[0]["start"], "end": timed[-1]["end"], "text": text, "words": timed}
    return {**said, "speaker": speaker} if speaker else said


def transcript(*segments) -> Transcript:
    chunks = [
        SimpleNamespace(
            chunk_index=0, start_seconds=0.0, end_seconds=60.0, segments=list(segments), language="en"
        )
    ]
    return merge_chunks(chunks, 60.0)


def completed_job(sessions, settings, user_id, t: Transcript) -> str:
    """A completed job with its transcript files in storage, as `merge` leaves them."""
    job_id = create_job_row(sessions, user_id, status=JobStatus.COMPLETED, transcript_text=t.text)
    storage = make_storage(settings)
    for fmt in TranscriptFormat:
        storage.put_bytes(transcript_key(job_id, fmt.value), render(t, fmt).encode())
    return job_id


@pytest.fixture
def owner(sessions):
    return create_user(sessions)


@pytest.fixture
def jfk(sessions, settings, owner) -> tuple[str, Transcript]:
    t = transcript(segment(SENTENCE, 1.0), segment("Ask what you can do for your country.", 30.0))
    return completed_job(sessions, settings, owner[0], t), t


def get(client, key, job_id, query):
    return client.get(f"/v1/jobs/{job_id}/transcript?{query}", headers=auth(key))


def cue_blocks(body: str, fmt: str) -> list[list[str]]:
    """Each cue's lines after its timing line."""
    blocks = body.removeprefix("WEBVTT\n\n").rstrip("\n").split("\n\n")
    return [b.split("\n")[2 if fmt == "srt" else 1 :] for b in blocks]


def durations(body: str) -> list[float]:
    times = re.findall(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)", body)
    seconds = [
        [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in (t[:4], t[4:])]
        for t in times
    ]
    return [end - start for start, end in seconds]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_captions_are_shaped_as_asked_and_keep_every_word(client, owner, jfk, fmt):
    job_id, t = jfk
    response = get(client, owner[1], job_id, f"format={fmt}&max_line_chars=16&max_lines=1&max_cue_seconds=2")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == TranscriptFormat(fmt).media_type
    assert response.headers["content-disposition"] == f'inline; filename="{job_id}.{fmt}"'
    cues = cue_blocks(response.text, fmt)
    assert all(len(lines) == 1 and len(lines[0]) <= 16 for lines in cues), cues
    assert all(0 < d <= 2 for d in durations(response.text))
    assert [w for lines in cues for line in lines for w in line.split()] == t.text.split()
    # The first sentence alone (0.4 s a word, 14 words) needs at least three 2-second cues.
    assert len(cues) >= 5


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_without_shaping_parameters_the_stored_captions_are_served_and_the_defaults_match_them(
    client, owner, jfk, fmt
):
    job_id, t = jfk
    stored = get(client, owner[1], job_id, f"format={fmt}")
    assert stored.status_code == 200
    assert stored.text == render(t, TranscriptFormat(fmt))
    # The stored file is shaped by the defaults: 42 characters, 2 lines, 7 s.
    assert all(len(line) <= 42 for lines in cue_blocks(stored.text, fmt) for line in lines)
    asked = get(client, owner[1], job_id, f"format={fmt}&max_line_chars=42&max_lines=2&max_cue_seconds=7")
    assert asked.text == stored.text
    tighter = get(client, owner[1], job_id, f"format={fmt}&max_line_chars=30")
    assert tighter.status_code == 200 and tighter.text != stored.text


def test_every_cue_of_a_speaker_names_the_speaker(client, sessions, settings, owner):
    t = transcript(segment(SENTENCE, 1.0, "A"), segment("Ask what you can do for your country.", 7.0, "B"))
    job_id = completed_job(sessions, settings, owner[0], t)
    srt = get(client, owner[1], job_id, "format=srt&max_line_chars=30&max_lines=1")
    firsts = [lines[0] for lines in cue_blocks(srt.text, "srt")]
    assert len(firsts) >= 4
    assert all(re.match(r"\[Speaker [AB]\] ", line) and len(line) <= 30 for line in firsts), firsts
    vtt = get(client, owner[1], job_id, "format=vtt&max_lines=1")
    # The voice span counts toward the 42 characters; a cue never holds both speakers.
    assert vtt.text == (
        "WEBVTT\n\n"
        "00:00:01.000 --> 00:00:03.000\n<v Speaker A>And so, my fellow Americans,\n\n"
        "00:00:03.000 --> 00:00:05.000\n<v Speaker A>ask not what your country\n\n"
        "00:00:05.000 --> 00:00:06.600\n<v Speaker A>can do for you.\n\n"
        "00:00:07.000 --> 00:00:09.000\n<v Speaker B>Ask what you can do\n\n"
        "00:00:09.000 --> 00:00:10.200\n<v Speaker B>for your country.\n"
    )


BAD_SHAPES = [
    ("max_line_chars=9", "max_line_chars"),
    ("max_line_chars=201", "max_line_chars"),
    ("max_line_chars=forty", "max_line_chars"),
    ("max_lines=0", "max_lines"),
    ("max_lines=11", "max_lines"),
    ("max_cue_seconds=0.5", "max_cue_seconds"),
    ("max_cue_seconds=61", "max_cue_seconds"),
    ("max_cue_seconds=nan", "max_cue_seconds"),
    ("max_cue_seconds=inf", "max_cue_seconds"),
]


def test_a_shaping_parameter_out_of_bounds_is_a_422_naming_it(client, owner, jfk):
    for query, named in BAD_SHAPES:
        response = get(client, owner[1], jfk[0], f"format=srt&{query}")
        assert response.status_code == 422, (query, response.text)
        body = response.json()
        assert body["error"] == "validation_error" and named in body["detail"], (query, body)
    # The bounds themselves are allowed.
    edges = "max_line_chars=10&max_lines=1&max_cue_seconds=1"
    assert get(client, owner[1], jfk[0], f"format=srt&{edges}").status_code == 200
    edges = "max_line_chars=200&max_lines=10&max_cue_seconds=60"
    assert get(client, owner[1], jfk[0], f"format=vtt&{edges}").status_code == 200


@pytest.mark.parametrize("fmt", ["txt", "json"])
def test_shaping_parameters_with_a_format_that_is_not_captions_are_a_422(client, owner, jfk, fmt):
    response = get(client, owner[1], jfk[0], f"format={fmt}&max_lines=1&max_cue_seconds=3")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert "max_lines, max_cue_seconds" in body["detail"] and f"format={fmt}" in body["detail"], body


def test_a_job_not_done_yet_answers_202_whatever_the_shape_asked(client, sessions, owner):
    job_id = create_job_row(sessions, owner[0])
    response = get(client, owner[1], job_id, "format=vtt&max_lines=1")
    assert response.status_code == 202 and response.json()["id"] == job_id
