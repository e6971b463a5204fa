"""Speech-aware planning, end to end (the in-process worker and the bundled tiny.en model).

Two requirements, each on recordings built here from the shared passages (`tests.audio_builders`):

- Silence and a quiet room's noise cost nothing and invent nothing: two sentences ten minutes apart
  are transcribed as the same two sentences, at their own times, for about the model time of the two
  sentences alone.
- Cuts forced into pauses as short as 150 ms lose and double no word: every cut between two chunks
  lies inside one of those pauses, and the words on both sides of it are there exactly once.
"""

import functools
from collections.abc import Callable, Sequence
from difflib import SequenceMatcher
from itertools import pairwise
from pathlib import Path

import jiwer
import numpy as np
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from core.enums import JobStatus
from repositories.models import Chunk, Job
from tests import audio_builders as ab
from tests.conftest import create_user, load_job, shared_whisper, speech, submit_file, word_error_rate
from worker.audio import Pcm
from worker.backends.base import BatchTranscriber, Transcriber
from worker.context import WorkerContext
from worker.merge import merge_chunks

_normalize = EnglishTextNormalizer()

# A quiet room through an ordinary microphone: hum and hiss around -45 dBFS.
QUIET_ROOM_DBFS = -45.0


def words(text: str) -> list[str]:
    return str(_normalize(text)).split()


@pytest.fixture
def user_id(sessions):
    return create_user(sessions)[0]


def transcribe(
    ctx: WorkerContext, run_worker: Callable[[], None], user_id: str, path: Path
) -> tuple[Job, list[Chunk]]:
    job_id = submit_file(ctx, user_id, path)
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    return job, chunks


def describe(job: Job, chunks: Sequence[Chunk]) -> str:
    """What the planner cut and what the model heard, for a failure message."""
    lines = [
        f"chunk {c.chunk_index}: {c.start_seconds:.3f}-{c.end_seconds:.3f} s, spans {c.speech_spans}, "
        f"{c.speech_seconds} s to the model: {c.text!r}"
        for c in chunks
    ]
    return "\n".join([*lines, f"transcript: {job.transcript_text!r}"])


def model_seconds(chunks: Sequence[Chunk]) -> float:
    """The audio the model was given: what a job costs, whatever the machine."""
    return sum(c.speech_seconds for c in chunks)


def measured_seconds(chunks: Sequence[Chunk]) -> float:
    """The model's wall-clock time, as each chunk recorded it (its share of a batched call)."""
    return sum(c.transcribe_seconds or 0.0 for c in chunks)


# --- silence and noise -------------------------------------------------------------------------

SENTENCES = ("librispeech/1089-134686-0000.flac", "librispeech/2412-153948-0000.flac")
TEN_MINUTES = 600.0
# A segment may reach this far into the silence around its sentence (what the planner keeps around
# speech), never further.
SEGMENT_SLACK = 1.0

FILLERS: dict[str, Callable[[], Pcm]] = {
    "silence": lambda: ab.silence(TEN_MINUTES),
    "quiet room noise": lambda: ab.noise(TEN_MINUTES, QUIET_ROOM_DBFS, seed=10),
}


@pytest.mark.parametrize("filler", FILLERS)
def test_ten_minutes_without_speech_between_two_sentences_adds_no_word_and_almost_no_model_time(
    filler, worker_ctx, run_worker, user_id, tmp_path
):
    first, second = (ab.load(speech(path)) for path in SENTENCES)
    close = ab.join([("first", first), ("second", second)], [ab.silence(0.5)])
    apart = ab.join([("first", first), ("second", second)], [FILLERS[filler]()])
    near, near_chunks = transcribe(worker_ctx, run_worker, user_id, close.write(tmp_path / "close.wav"))
    far, far_chunks = transcribe(worker_ctx, run_worker, user_id, apart.write(tmp_path / "apart.wav"))
    print(f"\nclose:\n{describe(near, near_chunks)}\n{filler}:\n{describe(far, far_chunks)}")
    print(
        f"measured model time: close {measured_seconds(near_chunks):.2f} s, "
        f"{filler} {measured_seconds(far_chunks):.2f} s"
    )

    # Nothing invented: against the transcript of the sentences 0.5 s apart, the one of the sentences
    # ten minutes apart adds no word; a word heard a little differently (the model hears other
    # audio around it) may differ, no more than one.
    expected, heard = words(near.transcript_text), words(far.transcript_text)
    diff = jiwer.process_words(" ".join(expected), " ".join(heard))
    assert diff.insertions == 0, describe(far, far_chunks)
    assert diff.substitutions <= 1 and diff.deletions <= 1, describe(far, far_chunks)

    said_first, said_second = apart.passages
    segments = merge_chunks(far_chunks, far.audio_duration_seconds).segments
    before = [s for s in segments if s["start"] < TEN_MINUTES]
    after = [s for s in segments if s["start"] >= TEN_MINUTES]
    assert all(s["end"] < TEN_MINUTES for s in before), segments
    assert all(s["start"] >= said_second.start - SEGMENT_SLACK for s in after), segments
    assert all(s["end"] <= said_first.end + SEGMENT_SLACK for s in before), segments
    assert all(s["end"] <= said_second.end + SEGMENT_SLACK for s in after), segments
    for group, recording in ((before, SENTENCES[0]), (after, SENTENCES[1])):
        reference = speech(recording).with_suffix(".txt").read_text()
        text = " ".join(s["text"] for s in group)
        assert word_error_rate(reference, text) <= 0.2, (recording, segments)

    assert model_seconds(far_chunks) <= 1.5 * model_seconds(near_chunks), describe(far, far_chunks)
    assert len(far_chunks) <= 1.5 * len(near_chunks), describe(far, far_chunks)


# --- cuts in short pauses ----------------------------------------------------------------------

# LJSpeech passages in reading order, each one whose first two and last two words tiny.en gets right
# when it hears the passage alone (checked by the test before it relies on them): 94 s of speech.
CUT_PASSAGES = (
    "LJ001-0001",
    "LJ001-0002",
    "LJ001-0003",
    "LJ001-0004",
    "LJ001-0006",
    "LJ001-0007",
    "LJ001-0008",
    "LJ001-0009",
    "LJ001-0012",
    "LJ001-0014",
    "LJ001-0016",
    "LJ001-0017",
    "LJ001-0018",
    "LJ001-0021",
    "LJ001-0023",
    "LJ001-0028",
    "LJ001-0029",
)
SHORT_PAUSE = 0.150
# How far outside its pause a cut may sit: a few milliseconds (a cut falls on a 32 ms VAD frame's edge).
CUT_SLACK = 0.005

JOINTS: dict[str, Callable[[int], Pcm]] = {
    "silence": lambda _: ab.silence(SHORT_PAUSE),
    "quiet room noise": lambda i: ab.noise(SHORT_PAUSE, QUIET_ROOM_DBFS, seed=i),
}


@functools.cache
def passage(name: str) -> Pcm:
    """The passage without its margins and with its own pauses shortened below 150 ms, so that the
    pauses between passages are the only places left to cut at. (As recorded, LJSpeech pauses for
    300-600 ms at commas, and the planner rightly cuts there instead.)"""
    return ab.tighten(ab.trim(ab.load(speech(f"ljspeech/{name}.wav"))))


@functools.cache
def transcribed_alone(model: Transcriber, names: tuple[str, ...]) -> dict[str, list[str]]:
    """Each passage transcribed on its own (one model window each), as normalized words."""
    assert isinstance(model, BatchTranscriber)
    audios = [passage(name).astype(np.float32) / 32768.0 for name in names]
    results = model.transcribe_many(audios, ["en"] * len(names))
    return {name: words(" ".join(s.text for s in r.segments)) for name, r in zip(names, results, strict=True)}


def heard_as(word: str, reference: str) -> bool:
    """The word heard, allowing a spelling variant ("therefor"): the int8 kernels differ slightly
    between CPUs, and this only checks that the passage's edge words are heard at all."""
    return SequenceMatcher(None, word, reference).ratio() >= 0.8


def reference_words(name: str) -> list[str]:
    return words(speech(f"ljspeech/{name}.txt").read_text())


def occurrences(haystack: Sequence[str], needle: Sequence[str]) -> int:
    n = len(needle)
    return sum(1 for i in range(len(haystack) - n + 1) if list(haystack[i : i + n]) == list(needle))


def pause_of_cut(pauses: Sequence[tuple[float, float]], end: float, start: float) -> int | None:
    """The pause between passages that holds a cut (one chunk's end, the next one's start)."""
    for i, (begin, finish) in enumerate(pauses):
        if begin - CUT_SLACK <= end <= start <= finish + CUT_SLACK:
            return i
    return None


@pytest.mark.parametrize("joint", JOINTS)
def test_cuts_forced_into_150_ms_pauses_lose_and_double_no_word(
    joint, worker_ctx, run_worker, user_id, tmp_path
):
    alone = transcribed_alone(shared_whisper(worker_ctx.settings), CUT_PASSAGES)
    for name in CUT_PASSAGES:
        reference = reference_words(name)
        heard = alone[name]
        edges = [*zip(heard[:2], reference[:2], strict=True), *zip(heard[-2:], reference[-2:], strict=True)]
        assert len(heard) >= 4 and all(heard_as(w, r) for w, r in edges), (
            f"tiny.en no longer hears the first or last words of {name} alone: choose other passages",
            alone[name],
        )
    recording = ab.join(
        [(name, passage(name)) for name in CUT_PASSAGES],
        [JOINTS[joint](i) for i in range(len(CUT_PASSAGES) - 1)],
    )
    assert recording.duration >= 90
    job, chunks = transcribe(worker_ctx, run_worker, user_id, recording.write(tmp_path / "passages.wav"))
    merged = words(job.transcript_text)
    print(f"\n{joint}:\n{describe(job, chunks)}")

    assert len(chunks) >= 3, describe(job, chunks)
    all_alone = [w for name in CUT_PASSAGES for w in alone[name]]
    for before, after in pairwise(chunks):
        i = pause_of_cut(recording.pauses, before.end_seconds, after.start_seconds)
        assert i is not None, (
            f"the cut {before.end_seconds}-{after.start_seconds} is not in a pause between passages",
            _pauses_near(recording.pauses, before.end_seconds),
            describe(job, chunks),
        )
        tail, head = alone[CUT_PASSAGES[i]][-2:], alone[CUT_PASSAGES[i + 1]][:2]
        print(f"cut at {before.end_seconds:.3f} s in pause {recording.pauses[i]}: {tail} | {head}")
        assert occurrences(merged, tail + head) == 1, (tail, head, describe(job, chunks))
        for side in (tail, head):
            assert occurrences(merged, side) == occurrences(all_alone, side), (side, describe(job, chunks))
    assert abs(len(merged) - len(all_alone)) <= 2, (len(merged), len(all_alone), describe(job, chunks))


def _pauses_near(pauses: Sequence[tuple[float, float]], t: float) -> list[tuple[float, float]]:
    return [p for p in pauses if abs(p[0] - t) < 5]
