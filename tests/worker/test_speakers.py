"""Speaker labels of dialogue jobs on the local backend (`worker.speakers`), from real voices.

- A conversation of three real speakers, turns of 9-18 s, crossing chunk cuts, transcribed end to end
  (the in-process worker, the bundled tiny.en model, the speaker encoder in resemblyzer's wheel):
  at least 90 % of the words go to the right speaker, and each speaker keeps one letter in every chunk.
- The job's count of speakers is honoured: exactly, within bounds, or found from the voices.
- Words and segments: a segment never spans two speakers, and a turn may run across a cut.
"""

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from core.db import session_scope
from core.enums import JobStatus, Mode
from repositories.jobs import JobRepository
from repositories.models import Chunk
from storage.keys import transcript_key
from tests import audio_builders as ab
from tests.conftest import create_user, load_job, speech, submit_file
from worker.audio import Pcm, model_input
from worker.merge import merge_chunks
from worker.speakers import SpeakerCount, Voice, cluster, voice_prints

REAL = [pytest.param("real", marks=pytest.mark.integration)]
# Which clusters each person's windows went to, and how many of them.
Clusters = dict[str, Counter[int]]


def passage(*paths: str) -> Pcm:
    return np.concatenate([ab.trim(ab.load(speech(p))) for p in paths])


def mfa(start: float, end: float) -> Pcm:
    """Part of the MFA author's spontaneous recording (a man speaking freely, with fillers)."""
    pcm = ab.load(speech("mfa_spontaneous/acoustic_corpus.wav"))
    return ab.trim(pcm[ab.samples(start) : ab.samples(end)])


def conversation() -> ab.Recording:
    """Three people taking turns: a woman reading (LJSpeech), a man reading (LibriSpeech 1089) and
    a man speaking freely (MFA), with pauses of 0.3-1.2 s between turns, 82 s in all."""
    turns = [
        ("lj", passage("ljspeech/LJ001-0001.wav", "ljspeech/LJ001-0002.wav")),
        ("ls", passage("librispeech/1089-134686-0000.flac")),
        ("mfa", mfa(0.0, 17.8)),
        ("lj", passage("ljspeech/LJ001-0003.wav")),
        (
            "ls",
            passage(
                "librispeech/1089-134686-0001.flac",
                "librispeech/1089-134691-0000.flac",
                "librispeech/1089-134691-0001.flac",
            ),
        ),
        ("mfa", mfa(17.8, 27.0)),
        ("lj", passage("ljspeech/LJ001-0004.wav", "ljspeech/LJ001-0005.wav")),
    ]
    return ab.join(turns, [ab.silence(s) for s in (0.4, 0.9, 0.3, 1.2, 0.5, 0.8)])


def speaker_at(recording: ab.Recording, t: float) -> str:
    """Who speaks at `t`: the turn that holds it, or the nearest one (a word timed into a pause)."""
    return min(recording.passages, key=lambda p: max(p.start - t, t - p.end, 0.0)).name


def attribution(truth: list[str], letters: list[str]) -> float:
    """The share of words whose letter is their speaker's, with letters matched to speakers one to
    one in the way that agrees with the most words."""
    speakers, found = sorted(set(truth)), sorted(set(letters))
    counts = np.zeros((len(speakers), len(found)))
    for who, letter in zip(truth, letters, strict=True):
        counts[speakers.index(who), found.index(letter)] += 1
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(truth))


def rendered(ctx, job_id: str, fmt: str) -> str:
    with ctx.storage.open(transcript_key(job_id, fmt)) as f:
        return str(f.read().decode())


@pytest.fixture
def user_id(sessions):
    return create_user(sessions)[0]


@pytest.mark.parametrize("stack", REAL, indirect=True)
def test_three_real_speakers_get_their_own_letter_for_nine_words_in_ten_across_chunk_cuts(
    worker_ctx, run_worker, user_id, tmp_path
):
    recording = conversation()
    job_id = submit_file(worker_ctx, user_id, recording.write(tmp_path / "conversation.wav"))
    with session_scope(worker_ctx.sessions) as session:
        jobs = JobRepository(session)
        jobs.update(jobs.get(job_id), mode=Mode.DIALOGUE)  # no count: found from the voices
    run_worker()
    job, chunks = load_job(worker_ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    body = json.loads(rendered(worker_ctx, job_id, "json"))
    words = [w for s in body["segments"] for w in s["words"]]
    truth = [speaker_at(recording, (w["start"] + w["end"]) / 2) for w in words]
    letters = [w["speaker"] for w in words]
    assert len(words) > 150  # the words of 82 s of speech, each with its time and speaker
    accuracy = attribution(truth, letters)
    print(f"\nspeaker attribution: {accuracy:.1%} of {len(words)} words, {len(chunks)} chunks")
    assert accuracy >= 0.90

    # Every speaker speaks in at least two chunks, and has one letter in all of them.
    in_chunk: dict[str, Counter[tuple[int, str]]] = defaultdict(Counter)
    for w, who in zip(words, truth, strict=True):
        index = next(c.chunk_index for c in chunks if c.start_seconds <= w["start"] <= c.end_seconds)
        in_chunk[who][index, w["speaker"]] += 1
    letter_of = {}
    for who, counts in in_chunk.items():
        chunk_letters = {i: max("ABCDEFGH", key=lambda k: counts[i, k]) for i, _ in counts}
        assert len(chunk_letters) >= 2, f"{who} speaks in one chunk only: the test crosses no cut"
        assert len(set(chunk_letters.values())) == 1, f"{who} changes letter across chunks: {counts}"
        letter_of[who] = chunk_letters.popitem()[1]
    assert sorted(letter_of.values()) == ["A", "B", "C"] and letter_of["lj"] == "A"  # first to speak

    # A segment never spans two speakers; the turns alternate; every format names them.
    assert all(w["speaker"] == s["speaker"] for s in body["segments"] for w in s["words"])
    turns = body["utterances"]
    assert all(a["speaker"] != b["speaker"] for a, b in itertools.pairwise(turns))
    assert rendered(worker_ctx, job_id, "txt") == "".join(
        f"Speaker {t['speaker']}: {t['text']}\n" for t in turns
    )
    assert "<v Speaker C>" in rendered(worker_ctx, job_id, "vtt")
    # The voice prints are what the merge clustered: each chunk's, inside the chunk, 256 values each.
    for chunk in chunks:
        assert chunk.voices and all(
            chunk.start_seconds <= start < end <= chunk.end_seconds and len(vector) == 256
            for start, end, vector in chunk.voices
        )


# --- the count of speakers ------------------------------------------------------------------------

VOICES = {
    "lj": ("ljspeech/LJ001-0006.wav", "ljspeech/LJ001-0007.wav"),
    "ls": ("librispeech/1089-134686-0000.flac", "librispeech/1089-134691-0001.flac"),
    "mfa": ("mfa_spontaneous/cold_corpus.wav",),
    "fleurs": ("fleurs_en/fleurs-en-001.ogg", "fleurs_en/fleurs-en-005.ogg"),
}


@pytest.fixture(scope="module")
def prints() -> dict[str, list[Voice]]:
    """Voice prints of four real people, 14-26 s of speech each, one after the other on a timeline
    with a pause between them (as if each spoke once)."""
    found, at = {}, 0.0
    for name, paths in VOICES.items():
        pcm = passage(*paths)
        found[name] = voice_prints(model_input(pcm), [[at, at + ab.seconds(pcm)]])
        at += ab.seconds(pcm) + 2.0
    return found


def clustered(prints: dict[str, list[Voice]], names: list[str], count: SpeakerCount) -> Clusters:
    """Which clusters each person's windows went to."""
    labels = iter(cluster([v for n in names for v in prints[n]], count))
    return {n: Counter(next(labels) for _ in prints[n]) for n in names}


def clusters(found: Clusters) -> int:
    return len({label for counts in found.values() for label in counts})


def main_clusters(found: Clusters) -> dict[str, int]:
    """Each person's cluster, where at least 90 % of their windows went."""
    mains = {}
    for name, counts in found.items():
        label, n = counts.most_common(1)[0]
        assert n >= 0.9 * counts.total(), f"{name} is split: {found}"
        mains[name] = label
    return mains


def test_four_voices_found_from_the_audio_when_the_job_names_no_count(prints):
    found = clustered(prints, list(VOICES), SpeakerCount())
    assert clusters(found) == 4 and len(set(main_clusters(found).values())) == 4


def test_one_voice_is_not_split_into_speakers(prints):
    assert clusters(clustered(prints, ["lj"], SpeakerCount())) == 1


@pytest.mark.parametrize("count", [2, 3, 4])
def test_an_exact_count_gives_that_many_speakers(prints, count):
    found = clustered(prints, list(VOICES), SpeakerCount(count, count))
    assert clusters(found) == count
    if count == 4:
        assert len(set(main_clusters(found).values())) == 4


@pytest.mark.parametrize(("low", "high", "expected"), [(2, 3, 3), (5, 6, 5), (1, 6, 4), (3, 4, 4)])
def test_bounds_keep_the_voices_found_within_them(prints, low, high, expected):
    found = clustered(prints, list(VOICES), SpeakerCount(low, high))
    assert clusters(found) == expected


# --- words and segments ---------------------------------------------------------------------------


def _voices(start: float, end: float, first_voice: Callable[[float], bool]) -> list[Voice]:
    """Windows every 0.8 s, of the first voice where `first_voice(middle)`, else of the second: two
    voices as far apart as voices go, each in its own half of the 256 values."""
    halves = np.eye(2).repeat(128, axis=1) / np.sqrt(128)
    windows = np.arange(start, end - 1.6 + 1e-9, 0.8)
    return [[t, t + 1.6, list(halves[0 if first_voice(t + 0.8) else 1])] for t in windows]


def _segment(start: float, end: float) -> dict[str, Any]:
    words = [{"start": t, "end": t + 0.4, "text": f" w{t:g}"} for t in np.arange(start, end, 0.5)]
    return {
        "start": start,
        "end": end,
        "text": "".join(str(w["text"]) for w in words).strip(),
        "words": words,
    }


def test_a_segment_is_cut_where_the_voice_changes_and_a_turn_runs_across_a_cut():
    # Chunk 0: voice 1 until 5 s, then voice 2; chunk 1: voice 2 until 15 s, then voice 1 again.
    chunks = [
        Chunk(chunk_index=0, start_seconds=0.0, end_seconds=10.0, language="en"),
        Chunk(chunk_index=1, start_seconds=10.0, end_seconds=20.0, language="en"),
    ]
    chunks[0].segments, chunks[0].voices = [_segment(1.0, 9.0)], _voices(0.0, 10.0, lambda t: t < 5)
    chunks[1].segments, chunks[1].voices = [_segment(11.0, 19.0)], _voices(10.0, 20.0, lambda t: t >= 15)
    transcript = merge_chunks(chunks, 20.0, speakers=SpeakerCount())
    spans = [(s["speaker"], s["start"], s["end"]) for s in transcript.segments]
    assert [s for s, _, _ in spans] == ["A", "B", "B", "A"]
    assert spans[0][1] == 1.0 and 4.9 <= spans[0][2] <= spans[1][1] <= 5.6 and spans[3][2] == 19.0
    assert all(w["speaker"] == s["speaker"] for s in transcript.segments for w in s["words"])
    # The text is cut with the words: nothing lost or doubled (a word at 5 s may go either way).
    first, second = (s["text"] for s in transcript.segments[:2])
    assert f"{first} {second}" == _segment(1.0, 9.0)["text"] and first.endswith(("w4.5", "w5"))
    # Voice 2 speaks from 5 s in chunk 0 to 15 s in chunk 1: one turn.
    assert [(u["speaker"], u["start"], u["end"]) for u in transcript.utterances] == [
        ("A", 1.0, spans[0][2]),
        ("B", spans[1][1], spans[2][2]),
        ("A", spans[3][1], 19.0),
    ]
