"""Languages other than English: the multilingual `base` detects them and translates them.

The shared recordings are all English, so these sentences are read by espeak-ng. Its German and
Spanish are ones `base` recognizes (its French, Portuguese and Dutch it takes for other languages).
"""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.config import Settings
from core.options import Task
from tests import audio_builders as ab
from tests.conftest import shared_whisper
from worker.backends.base import PermanentTranscriptionError
from worker.backends.local import LocalWhisper
from worker.context import engine_plan

GERMAN = "Guten Morgen. Ich habe einen Hund und zwei Katzen."
SPANISH = "Buenos días. Hoy hace sol y los niños juegan en el parque."


@pytest.fixture(scope="module")
def base(multilingual_model: Path) -> LocalWhisper:
    settings = Settings(environment="test")
    return LocalWhisper(
        str(multilingual_model),
        engine_plan(settings),
        beam_size=settings.whisper_beam_size,
        word_timestamps=False,
    )


@pytest.fixture(scope="module")
def english_only() -> LocalWhisper:
    model = shared_whisper(Settings(environment="test"))
    assert isinstance(model, LocalWhisper)
    return model


@pytest.fixture(scope="module")
def say(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("espeak-ng") is None:
        message = "espeak-ng is not installed (./scripts/test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("spoken")
    return lambda text, voice: ab.spoken(text, voice, folder).astype(np.float32) / 32768


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


@pytest.mark.parametrize(("language", "sentence"), [("de", GERMAN), ("es", SPANISH)])
def test_the_language_spoken_is_detected_with_its_probability(base, say, language, sentence):
    found, probability = base.detect_language(say(sentence, language))

    assert (found, probability > 0.5) == (language, True), (found, probability)


def test_translate_reads_german_speech_in_english(base, say):
    audio = say(GERMAN, "de")

    (heard,) = base.transcribe_many([audio], ["de"])
    (translated,) = base.transcribe_many([audio], ["de"], task=Task.TRANSLATE)

    german = " ".join(s.text for s in heard.segments)
    english = " ".join(s.text for s in translated.segments)
    print(f"transcribed: {german!r}\ntranslated: {english!r}")
    assert {"guten", "morgen", "katzen"} <= words(german)
    assert {"good", "morning", "have"} <= words(english)
    assert not {"guten", "morgen", "katzen"} & words(english)
    assert translated.language == "de"  # the language spoken, whatever the text is written in


def test_an_english_only_model_knows_one_language_and_cannot_translate(english_only, say):
    audio = say(GERMAN, "de")

    assert english_only.multilingual is False
    assert english_only.detect_language(audio) == ("en", 1.0)
    with pytest.raises(PermanentTranscriptionError, match="English-only"):
        english_only.transcribe_many([audio], [None], task=Task.TRANSLATE)
