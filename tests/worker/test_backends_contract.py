"""One contract every transcription backend meets, run against each implementation.

`local` is the bundled faster-whisper model; `assemblyai` is the real SDK talking to a fake
AssemblyAI HTTP server on loopback (tests/fakes/assemblyai_server.py).
"""

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from core.config import Settings
from tests.conftest import shared_whisper, speech
from tests.fakes.assemblyai_server import serve
from worker.audio import SAMPLE_RATE, decode_pcm, encode_flac, read_audio
from worker.backends.assemblyai import AssemblyAI
from worker.backends.base import BatchTranscriber, ChunkTranscript, HostedTranscriber, Transcriber
from worker.planning import plan_windows


@pytest.fixture(scope="module")
def speech_chunk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """jfk.flac as one chunk, as `prepare` writes it: its speech, 16 kHz mono FLAC. Returns (path,
    seconds of audio in the chunk)."""
    (window,) = plan_windows(decode_pcm(speech("jfk/jfk.flac")), 30)
    path = tmp_path_factory.mktemp("chunk") / "00000.flac"
    path.write_bytes(encode_flac(window.pcm))
    return path, len(window.pcm) / SAMPLE_RATE


@pytest.fixture(params=["local", "assemblyai"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Transcriber]:
    if request.param == "local":
        yield shared_whisper(Settings(environment="test", data_dir=tmp_path))
        return
    with serve() as fake:
        yield AssemblyAI(fake.api_key, base_url=fake.base_url, poll_interval=0.01, timeout=30)


@pytest.mark.parametrize("language", [None, "en"])
def test_a_backend_transcribes_a_speech_chunk(backend, speech_chunk, language):
    audio, seconds = speech_chunk
    result = backend.transcribe(audio, language)
    assert result.language == "en"
    assert_timed_within(result, seconds)
    assert "country" in " ".join(s.text for s in result.segments).lower()


def assert_timed_within(result: ChunkTranscript, seconds: float) -> None:
    """Segments in order inside the chunk's audio, and their words (where given) inside them."""
    assert result.segments
    for segment in result.segments:
        assert 0 <= segment.start <= segment.end <= seconds + 0.05
        assert segment.text.strip()
        for word in segment.words:
            assert segment.start - 0.01 <= word.start <= word.end <= segment.end + 0.01
            assert word.text.strip()
        assert all(a.start <= b.start for a, b in pairwise(segment.words))
    assert all(a.end <= b.start + 0.01 for a, b in pairwise(result.segments))


def test_a_backend_gives_word_timings_when_they_are_asked_for(backend, speech_chunk):
    audio, seconds = speech_chunk
    if isinstance(backend, BatchTranscriber):
        result = backend.transcribe_many([read_audio(audio)], ["en"], words=[True])[0]
    else:
        result = backend.transcribe(audio, "en")  # a hosted backend always times its words
    assert_timed_within(result, seconds)
    words = [w for s in result.segments for w in s.words]
    assert len(words) >= 15
    assert [w.text.strip() for w in words] == " ".join(s.text for s in result.segments).split()
    assert words[-1].end > seconds / 2


def batching(backend: Transcriber) -> BatchTranscriber:
    if not isinstance(backend, BatchTranscriber):
        pytest.skip("not a batching backend")
    return backend


def test_a_batch_gives_one_result_per_chunk_in_order_each_as_if_it_were_alone(backend, speech_chunk):
    model = batching(backend)
    jfk = read_audio(speech_chunk[0])
    other = read_audio_of("librispeech/1089-134691-0000.flac")
    # More chunks than one model call takes, the same chunk in different places and company.
    audios = [jfk, other, jfk[: 5 * SAMPLE_RATE], *([other] * (model.batch_size - 3)), jfk, other]
    alone = {id(a): model.transcribe_many([a], ["en"]) for a in (jfk, other, audios[2])}

    together = model.transcribe_many(audios, ["en"] * len(audios))

    assert len(together) == len(audios)
    for audio, result in zip(audios, together, strict=True):
        assert result == alone[id(audio)][0]  # text, times, language: exactly equal
    assert together[0].segments[0].text != together[1].segments[0].text


def test_a_batch_detects_each_chunks_language_or_keeps_the_one_given(backend, speech_chunk):
    model = batching(backend)
    jfk = read_audio(speech_chunk[0])

    results = model.transcribe_many([jfk, jfk], [None, "en"])

    assert [r.language for r in results] == ["en", "en"]
    assert results[0] == results[1]


def read_audio_of(relative: str) -> npt.NDArray[np.float32]:
    pcm = np.concatenate(list(decode_pcm(speech(relative))))
    return pcm.astype(np.float32) / 32768.0


def test_a_hosted_backend_submits_once_and_collects_by_id_with_speakers_when_asked(backend, speech_chunk):
    if not isinstance(backend, HostedTranscriber):
        pytest.skip("not a hosted backend: it has no transcript to collect again")
    audio, _ = speech_chunk
    plain = backend.transcribe(audio, "en")
    transcript_id = backend.submit(audio, "en", speakers=True)
    first, again = backend.collect(transcript_id), backend.collect(transcript_id)
    assert first == again
    assert [s.text for s in first.segments] == [s.text for s in plain.segments]
    assert all(s.speaker and all(w.speaker == s.speaker for w in s.words) for s in first.segments)
    assert all(s.speaker is None for s in plain.segments)
