"""One contract every transcription backend meets, run against each implementation.

`local` is the bundled faster-whisper model; `assemblyai` is the real SDK talking to a fake
AssemblyAI HTTP server on loopback (tests/fakes/assemblyai_server.py).
"""

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from core.config import Settings
from tests.conftest import shared_whisper, speech
from tests.fakes.assemblyai_server import serve
from worker.audio import iter_chunks
from worker.backends.assemblyai import AssemblyAI
from worker.backends.base import HostedTranscriber, Transcriber


@pytest.fixture(scope="module")
def speech_chunk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """jfk.flac as one 16 kHz mono WAV chunk, as `prepare` writes it. Returns (path, seconds)."""
    chunk = next(iter_chunks(speech("jfk/jfk.flac"), 60))
    path = tmp_path_factory.mktemp("chunk") / "chunk.wav"
    path.write_bytes(chunk.wav)
    return path, chunk.end - chunk.start


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
    assert result.segments
    for segment in result.segments:
        assert 0 <= segment.start <= segment.end <= seconds + 0.05
        assert segment.text.strip()
        assert segment.words
        for word in segment.words:
            assert segment.start - 0.01 <= word.start <= word.end <= segment.end + 0.01
            assert word.text.strip()
    assert all(a.end <= b.start + 0.01 for a, b in pairwise(result.segments))
    assert "country" in " ".join(s.text for s in result.segments).lower()


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
