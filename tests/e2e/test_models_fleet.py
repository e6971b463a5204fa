"""Two models in one fleet, as an operator runs it: jobs naming each run side by side on the same
worker, `GET /v1/models` lists both, and no worker ever holds more models than its bound."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import audio_builders as ab
from tests.conftest import speech, word_error_rate
from tests.e2e.support import Service, submit, wait_done

pytestmark = pytest.mark.e2e

GERMAN = "Guten Morgen. Heute gehen wir zusammen in den Park, und danach trinken wir Kaffee."


@pytest.fixture(scope="module")
def two_models(service_factory: Callable[..., Service], multilingual_model: Path) -> Service:
    from core.config import Settings

    models = f"tiny.en={Settings().whisper_model},base={multilingual_model}"
    # One worker: it must take turns between the models, evicting one to load the other.
    return service_factory(workers=1, VERBATIM_MODELS=models, VERBATIM_RESIDENT_MODELS="1")


def _log_events(service: Service, event: str) -> list[dict[str, Any]]:
    found = []
    for line in service.log.read_text(errors="replace").splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found


def test_jobs_naming_either_model_run_side_by_side_within_the_resident_bound(
    two_models: Service, tmp_path: Path
) -> None:
    german = tmp_path / "german.wav"
    ab.write_wav(german, ab.spoken(GERMAN, "de", tmp_path))
    with two_models.client() as client:
        listed = client.get("/v1/models").json()
        assert {m["id"] for m in listed["data"]} == {"tiny.en", "base"}, listed
        assert listed["object"] == "list"
        jobs = [
            submit(client, speech("jfk/jfk.flac"), model="tiny.en"),
            submit(client, german, model="base"),
            submit(client, speech("jfk/jfk.flac"), model="base"),
            submit(client, german, model="base", task="translate"),
        ]
        done = [wait_done(client, job["id"]) for job in jobs]
        texts = [client.get(f"/v1/jobs/{job['id']}/transcript").text for job in jobs]
    assert [d["status"] for d in done] == ["completed"] * 4, done
    assert [d["options"]["model"] for d in done] == ["tiny.en", "base", "base", "base"]
    reference = speech("jfk/jfk.txt").read_text()
    assert word_error_rate(reference, texts[0]) < 0.1, texts[0]
    assert word_error_rate(reference, texts[2]) < 0.2, texts[2]
    assert done[1]["language"] == "de" and done[1]["language_probability"] > 0.5, done[1]
    assert {"guten", "morgen"} <= set(texts[1].lower().replace(".", " ").replace(",", " ").split()), texts[1]
    english = texts[3].lower()
    assert "park" in english and "coffee" in english and "kaffee" not in english, texts[3]

    loaded, evicted = _log_events(two_models, "model.loaded"), _log_events(two_models, "model.evicted")
    print(f"model loads: {[(r['model'], r['resident']) for r in loaded]}; evictions: {len(evicted)}")
    assert {r["model"] for r in loaded} == {"tiny.en", "base"}
    assert evicted, "one worker ran jobs of both models with room for one: it must have evicted"
    assert all(len(r["resident"]) <= 1 for r in loaded + evicted), loaded + evicted
