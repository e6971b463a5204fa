"""How the local backend reads a window: timestamped pieces, continued where the model stops early."""

import numpy as np
import pytest
from faster_whisper.tokenizer import Tokenizer

from core.config import Settings
from tests import audio_builders as ab
from tests.conftest import shared_whisper, speech
from worker.backends import local
from worker.backends.local import LocalWhisper, _Piece, _timed_pieces, _without_repeat
from worker.planning import plan_windows

# Three FLEURS recordings by different speakers, a short pause apart: tiny.en ends its first pass
# after the second one (checked below), as it does wherever the voice or the recording changes.
VOICES = ("fleurs_en/fleurs-en-000.ogg", "fleurs_en/fleurs-en-001.ogg", "fleurs_en/fleurs-en-002.ogg")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LocalWhisper:
    backend = shared_whisper(Settings(environment="test", data_dir=tmp_path_factory.mktemp("data")))
    assert isinstance(backend, LocalWhisper)
    return backend


@pytest.fixture(scope="module")
def tokenizer(model: LocalWhisper) -> Tokenizer:
    return model._tokenizer("en")


def test_speech_after_the_model_stops_early_is_read_from_where_it_stopped(model, monkeypatch):
    recording = ab.join([(v, ab.load(speech(v))) for v in VOICES], [ab.silence(0.3), ab.silence(0.55)])
    (window,) = plan_windows([recording.pcm], 30)  # the three voices in one window
    audio = window.pcm.astype(np.float32) / 32768

    (read,) = model.transcribe_many([audio], ["en"])

    text = " ".join(s.text for s in read.segments).lower()
    assert "slow communication channels" in text  # the first voice
    assert "capital letter" in text  # the second
    assert "romantic and fascinating" in text  # the third, read on from the last timestamp
    seconds = len(audio) / 16000
    assert all(0 <= s.start <= s.end <= seconds for s in read.segments)
    assert all(a.end <= b.start for a, b in zip(read.segments, read.segments[1:], strict=False))

    monkeypatch.setattr(local, "CONTINUATIONS", 0)
    (first_pass,) = model.transcribe_many([audio], ["en"])
    assert "romantic" not in " ".join(s.text for s in first_pass.segments).lower()


def timestamp(tokenizer: Tokenizer, seconds: float) -> int:
    return int(tokenizer.timestamp_begin) + round(seconds / 0.02)


def test_pieces_are_the_text_between_timestamps_clamped_to_the_audio(tokenizer):
    ts = lambda s: timestamp(tokenizer, s)  # noqa: E731
    tokens = [
        ts(0.0),
        *tokenizer.encode(" Ask not."),
        ts(2.5),
        ts(2.5),
        *tokenizer.encode("."),  # nothing to read: left out
        ts(3.0),
        ts(3.0),
        *tokenizer.encode(" What your country"),
        ts(29.0),  # past the audio's end
        ts(29.0),
        *tokenizer.encode(" can do"),  # never closed: runs to the end
        tokenizer.eot,
    ]

    pieces = _timed_pieces(tokenizer, tokens, 0.0, 12.0)

    assert [(p.start, p.end, p.text) for p in pieces] == [
        (0.0, 2.5, "Ask not."),
        (3.0, 12.0, "What your country"),
        (12.0, 12.0, "can do"),
    ]


def piece(tokenizer: Tokenizer, text: str) -> _Piece:
    return _Piece(0.0, 1.0, tokens=tokenizer.encode(text), text=text.strip())


def test_a_continuation_drops_the_words_it_reads_again_from_the_piece_before(tokenizer):
    before = piece(tokenizer, " in the early Middle Ages. The earliest book")
    (again,) = _without_repeat(
        tokenizer, before, piece(tokenizer, " the earliest book printed with movable type,")
    )
    (new,) = _without_repeat(tokenizer, before, piece(tokenizer, " The aforesaid Gutenberg Bible"))

    assert again.text == "printed with movable type,"
    assert tokenizer.decode(again.tokens).strip() == again.text  # word timings align what is kept
    assert new.text == "The aforesaid Gutenberg Bible"
    assert _without_repeat(tokenizer, before, piece(tokenizer, " the earliest book.")) == []
