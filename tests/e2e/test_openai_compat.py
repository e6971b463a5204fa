"""OpenAI's own Python package, pointed at a running stack as its users point it (`base_url`, a
Verbatim key): every response format, word timestamps, a stream whose deltas make the final text,
a translation on the multilingual model, the SDK's own exceptions for refusals, and a client that
leaves without cancelling its job."""

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from tests import audio_builders as ab
from tests.conftest import speech, word_error_rate
from tests.e2e.support import Service, wait_done, wait_until

# The SDK marks its translation call deprecated (OpenAI's own models are): the call is what is tested.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")]

JFK = speech("jfk/jfk.flac")
GERMAN = "Guten Morgen. Heute gehen wir zusammen in den Park, und danach trinken wir Kaffee."


@pytest.fixture(scope="module")
def service(service_factory: Callable[..., Service], multilingual_model: Path) -> Service:
    from core.config import Settings

    models = f"tiny.en={Settings().whisper_model},base={multilingual_model}"
    return service_factory(workers=2, VERBATIM_MODELS=models)


@pytest.fixture(scope="module")
def client(service: Service) -> OpenAI:
    # No retries: a refusal must surface as the SDK's exception at once, and no request be sent twice.
    # Strict: every answer must validate against the SDK's own types, not only parse.
    return OpenAI(
        base_url=f"{service.url}/v1",
        api_key=service.key,
        max_retries=0,
        timeout=180,
        _strict_response_validation=True,
    )


@pytest.fixture(scope="module")
def jfk_four_times(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JFK four times with pauses between: more speech than one chunk holds (30 s)."""
    jfk, pause = ab.load(JFK), ab.silence(2.0)
    path = tmp_path_factory.mktemp("audio") / "jfk_four_times.wav"
    ab.write_wav(path, np.concatenate([jfk, pause, jfk, pause, jfk, pause, jfk]))
    return path


def audio(path: Path) -> tuple[str, bytes]:
    return (path.name, path.read_bytes())


def words_of(captions: str) -> list[str]:
    """The words of srt or vtt cues, without numbers, times and the header."""
    skipped = ("WEBVTT", "NOTE")
    lines = [
        line
        for line in captions.splitlines()
        if line.strip() and "-->" not in line and not line.isdigit() and not line.startswith(skipped)
    ]
    return " ".join(lines).split()


def test_every_response_format_is_the_same_transcript(client: OpenAI) -> None:
    formats = ["json", "text", "srt", "verbose_json", "vtt"]

    def transcribe(fmt: str) -> Any:
        return client.audio.transcriptions.create(
            model="whisper-1",
            file=audio(JFK),
            response_format=fmt,
            language="en",  # type: ignore[call-overload]
        )

    with ThreadPoolExecutor(len(formats)) as pool:
        plain, text, srt, verbose, vtt = pool.map(transcribe, formats)

    assert isinstance(plain, openai.types.audio.Transcription)
    assert word_error_rate(speech("jfk/jfk.txt").read_text(), plain.text) < 0.1, plain.text
    assert (
        plain.usage is not None
        and plain.usage.type == "duration"
        and plain.usage.seconds == pytest.approx(11, abs=0.1)
    )
    assert isinstance(text, str) and text.strip() == plain.text
    assert srt.startswith("1\n00:00:0") and words_of(srt) == plain.text.split(), srt
    assert vtt.startswith("WEBVTT") and words_of(vtt) == plain.text.split(), vtt
    assert isinstance(verbose, openai.types.audio.TranscriptionVerbose)
    assert verbose.text == plain.text and verbose.language == "en" and verbose.words is None
    assert verbose.duration == pytest.approx(11.0, abs=0.1)
    assert verbose.segments and " ".join(s.text for s in verbose.segments) == plain.text
    starts = [s.start for s in verbose.segments]
    assert starts == sorted(starts) and all(s.start < s.end <= verbose.duration for s in verbose.segments)


def test_word_timestamps_come_in_order_and_make_the_text(client: OpenAI, service: Service) -> None:
    raw = client.audio.transcriptions.with_raw_response.create(
        model="tiny.en",
        file=audio(JFK),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    verbose = raw.parse()
    assert verbose.words and verbose.segments
    print(f"words: {[(w.word, w.start, w.end) for w in verbose.words]}")
    assert [w.word for w in verbose.words] == verbose.text.split()
    assert all(0 <= w.start <= w.end <= verbose.duration for w in verbose.words)
    pairs = list(zip(verbose.words, verbose.words[1:], strict=False))
    assert all(a.end <= b.start for a, b in pairs), "each word starts after the one before ends"
    # An ordinary job of the caller's, kept in the history, that asked the model for word timings.
    with service.client() as api:
        job = api.get(f"/v1/jobs/{raw.headers['x-job-id']}").json()
    assert job["status"] == "completed" and job["options"]["timestamps"] == "word", job


def test_a_stream_sends_each_chunk_in_order_and_then_the_whole_text(
    client: OpenAI, service: Service, jfk_four_times: Path
) -> None:
    plain = client.audio.transcriptions.create(model="tiny.en", file=audio(JFK)).text
    single = list(client.audio.transcriptions.create(model="tiny.en", file=audio(JFK), stream=True))
    assert [e.type for e in single][-1] == "transcript.text.done"
    assert "".join(e.delta for e in single if e.type == "transcript.text.delta") == single[-1].text == plain

    raw = client.audio.transcriptions.with_raw_response.create(
        model="tiny.en", file=audio(jfk_four_times), stream=True
    )
    events = list(raw.parse())
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    print(f"deltas: {deltas}")
    assert [e.type for e in events] == ["transcript.text.delta"] * len(deltas) + ["transcript.text.done"]
    with service.client() as api:
        job = api.get(f"/v1/jobs/{raw.headers['x-job-id']}").json()
    assert len(deltas) == job["progress"]["chunks_total"] >= 2, job  # one delta per chunk
    assert "".join(deltas) == events[-1].text
    assert word_error_rate(" ".join([speech("jfk/jfk.txt").read_text()] * 4), events[-1].text) < 0.15


def test_a_multilingual_model_translates_german_speech_to_english(client: OpenAI, tmp_path: Path) -> None:
    german = tmp_path / "german.wav"
    ab.write_wav(german, ab.spoken(GERMAN, "de", tmp_path))
    translated = client.audio.translations.create(model="base", file=audio(german)).text.lower()
    print(f"translation: {translated}")
    assert "park" in translated and "coffee" in translated and "kaffee" not in translated
    # OpenAI's model name means the model that can do it: here the fleet's one multilingual model.
    again = client.audio.translations.create(model="whisper-1", file=audio(german), response_format="text")
    assert again.strip().lower() == translated, "the same model, the same deterministic decoding"


def test_refusals_are_the_sdks_usual_exceptions(client: OpenAI, service: Service) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.translations.create(model="tiny.en", file=audio(JFK))
    assert refused.value.code == "validation_error" and "English-only" in refused.value.message
    with pytest.raises(openai.BadRequestError) as bad_format:
        client.audio.transcriptions.create(model="tiny.en", file=audio(JFK), response_format="diarized_json")
    assert bad_format.value.param == "response_format"
    stranger = OpenAI(base_url=f"{service.url}/v1", api_key="vbt_" + "x" * 40, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.audio.transcriptions.create(model="whisper-1", file=audio(JFK))


def test_a_client_that_leaves_cancels_nothing(service: Service, jfk_four_times: Path) -> None:
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(10, read=1.0)) as gone:
        gone.post(
            f"{service.url}/v1/audio/transcriptions",
            headers={"Authorization": f"Bearer {service.key}"},
            files={"file": ("left.wav", jfk_four_times.read_bytes())},
            data={"model": "whisper-1"},
        )
    with service.client() as api:
        listed = api.get("/v1/jobs", params={"q": "left.wav"}).json()["items"]
        assert len(listed) == 1, listed
        done = wait_done(api, listed[0]["id"])
    assert done["status"] == "completed", done
    gone_events = wait_until(lambda: _logged(service, "openai.client_gone"), 10, "the wait to end")
    assert [e["job_id"] for e in gone_events] == [done["id"]]


def _logged(service: Service, event: str) -> list[dict[str, Any]]:
    found = []
    for line in service.log.read_text(errors="replace").splitlines():
        start = line.find("{")
        try:
            record = json.loads(line[start:]) if start >= 0 else None
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            found.append(record)
    return found
