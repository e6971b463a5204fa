"""The models a worker keeps loaded: by name from the allow-list, at most `resident_models` of them."""

import logging
from pathlib import Path

import fakeredis
import pytest

from core.config import Settings
from core.enums import Backend
from worker.backends.base import PermanentTranscriptionError
from worker.backends.local import LocalWhisper
from worker.context import WorkerContext, build_context
from worker.models import ResidentModels


def two_model_worker(tmp_path: Path, multilingual_model: Path, resident: int) -> WorkerContext:
    """A worker as `worker.main` builds it, offered the bundled tiny.en and the multilingual base."""
    bundled = Settings(environment="test").whisper_model
    settings = Settings(
        environment="test",
        data_dir=tmp_path,
        models=f"tiny.en={bundled},base={multilingual_model}",
        resident_models=resident,
    )
    return build_context(settings, fakeredis.FakeRedis())


def events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.getMessage(), r.__dict__["model"]) for r in caplog.records if r.name == "worker.models"]


def test_one_resident_model_is_unloaded_for_the_next_and_loaded_again_when_named_again(
    tmp_path, multilingual_model, caplog
):
    ctx = two_model_worker(tmp_path, multilingual_model, resident=1)
    caplog.set_level(logging.INFO, logger="worker.models")

    first = ctx.transcriber_for(Backend.LOCAL, "tiny.en")
    base = ctx.transcriber_for(Backend.LOCAL, "base")
    again = ctx.transcriber_for(Backend.LOCAL, "tiny.en")

    assert isinstance(base, LocalWhisper) and base.multilingual
    assert isinstance(again, LocalWhisper) and not again.multilingual
    assert again is not first  # unloaded, then loaded anew
    assert ctx.models.names == ["tiny.en"]
    assert events(caplog) == [
        ("model.loaded", "tiny.en"),
        ("model.evicted", "tiny.en"),
        ("model.loaded", "base"),
        ("model.evicted", "base"),
        ("model.loaded", "tiny.en"),
    ]


def test_two_resident_models_are_each_loaded_once(tmp_path, multilingual_model, caplog):
    ctx = two_model_worker(tmp_path, multilingual_model, resident=2)
    caplog.set_level(logging.INFO, logger="worker.models")

    first = ctx.transcriber_for(Backend.LOCAL, "tiny.en")
    ctx.transcriber_for(Backend.LOCAL, "base")
    again = ctx.transcriber_for(Backend.LOCAL, "tiny.en")

    assert isinstance(first, LocalWhisper) and again is first
    assert events(caplog) == [("model.loaded", "tiny.en"), ("model.loaded", "base")]
    # The default model (the first listed) is what a job naming none, and the worker's health, get.
    assert ctx.transcriber_for(Backend.LOCAL) is first
    assert ctx.transcriber is first
    assert ctx.batch_size() == first.batch_size


def test_a_model_the_allow_list_does_not_hold_fails_the_chunk_naming_those_it_does(tmp_path):
    ctx = build_context(Settings(environment="test", data_dir=tmp_path), fakeredis.FakeRedis())

    with pytest.raises(PermanentTranscriptionError, match=r"unknown model 'large-v3'.*offers tiny\.en"):
        ctx.transcriber_for(Backend.LOCAL, "large-v3")
    assert ctx.models.names == []  # nothing loaded, nothing evicted for it


def test_the_least_recently_used_model_goes_first_not_the_first_loaded(caplog):
    models: ResidentModels[str] = ResidentModels(2)
    caplog.set_level(logging.INFO, logger="worker.models")

    for name in ("a", "b", "a", "c"):
        models.get(name, lambda name=name: f"model {name}")  # type: ignore[misc]

    assert models.names == ["a", "c"]
    assert ("model.evicted", "b") in events(caplog)
