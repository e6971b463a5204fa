"""`prompt` and `hotwords`: text the model reads before the audio, to spell names the way a job wants."""

import numpy as np
import pytest

from core.config import Settings
from tests import audio_builders as ab
from tests.conftest import shared_whisper, speech
from worker.backends.local import LocalWhisper, context_tokens

# LJ001-0031: "In fourteen sixty-five Sweynheim and Pannartz began printing in the monastery of
# Subiaco near Rome," three names the bundled tiny.en does not know how to spell.
NAMES = ("Sweynheim", "Pannartz", "Subiaco")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LocalWhisper:
    backend = shared_whisper(Settings(environment="test", data_dir=tmp_path_factory.mktemp("data")))
    assert isinstance(backend, LocalWhisper)
    return backend


@pytest.fixture(scope="module")
def printers() -> np.ndarray:
    return ab.load(speech("ljspeech/LJ001-0031.wav")).astype(np.float32) / 32768


@pytest.fixture
def prompts(model: LocalWhisper, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Every decoder prompt the model builds while the test runs."""
    built: list[list[int]] = []
    get_prompt = model._model.get_prompt

    def recorded(*args, **kwargs):
        built.append(get_prompt(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(model._model, "get_prompt", recorded)
    return built


def text(model: LocalWhisper, audio: np.ndarray, **options: str) -> str:
    (read,) = model.transcribe_many([audio], ["en"], **options)  # type: ignore[arg-type]
    return " ".join(s.text for s in read.segments)


def test_a_prompt_spells_the_names_the_model_gets_wrong_without_it(model, printers):
    before = text(model, printers)
    after = text(model, printers, prompt="Sweynheim, Pannartz, Subiaco.")

    print(f"without prompt: {before!r}\nwith prompt:    {after!r}")
    assert not any(name in before for name in NAMES)
    assert all(name in after for name in NAMES)
    assert "monastery" in after and "Rome" in after  # the rest is read as before


def test_hotwords_are_read_before_every_window_and_spell_the_names(model, printers, prompts):
    after = text(model, printers, hotwords="Sweynheim Pannartz Subiaco")

    tokenizer = model._tokenizer("en")
    hot = tokenizer.encode(" Sweynheim Pannartz Subiaco")
    assert prompts and all(p[: 1 + len(hot)] == [tokenizer.sot_prev, *hot] for p in prompts)
    assert all(p[1 + len(hot) :][: len(tokenizer.sot_sequence)] == tokenizer.sot_sequence for p in prompts)
    assert all(name in after for name in NAMES)


def test_without_prompt_or_hotwords_a_window_reads_no_previous_text(model, printers, prompts):
    text(model, printers, prompt="  ", hotwords="")

    tokenizer = model._tokenizer("en")
    assert prompts and all(p[0] == tokenizer.sot and tokenizer.sot_prev not in p for p in prompts)


def test_hotwords_and_prompt_keep_to_half_the_decoder_keeping_hotwords_and_the_prompts_end():
    encode = lambda text: [ord(c) for c in text]  # noqa: E731 - one token per character

    short = context_tokens(encode, "the prompt", "hot words", max_length=448)
    long = context_tokens(encode, "x" * 500 + " the end", "hot", max_length=448)
    longest = context_tokens(encode, "prompt", "h" * 500, max_length=448)

    assert short == encode(" hot words") + encode(" the prompt")
    assert len(long) == 223 and long[:4] == encode(" hot") and long[-8:] == encode(" the end")
    assert longest == encode(" " + "h" * 222)  # hotwords alone fill the half; no prompt is left
