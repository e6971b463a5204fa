"""A `dialogue` job as a client sees it: submitted over HTTP with `backend=assemblyai`, transcribed
by the real AssemblyAI SDK against a fake AssemblyAI server on loopback, read back in every format."""

import re
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from core.config import Settings
from core.enums import Tier
from tests.api.test_jobs_flow import submit
from tests.conftest import auth, create_user, speech
from tests.fakes.assemblyai_server import FIRST, SECOND, FakeAssemblyAI, serve


@pytest.fixture
def fake() -> Iterator[FakeAssemblyAI]:
    with serve() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, fake: FakeAssemblyAI) -> Settings:
    # The fleet default stays local: the job names AssemblyAI itself.
    return settings.model_copy(
        update={
            "assemblyai_api_key": SecretStr(fake.api_key),
            "assemblyai_base_url": fake.base_url,
            "assemblyai_poll_seconds": 0.01,
            "task_retries": 1,
            "retry_backoff_seconds": [0],
        }
    )


def test_a_dialogue_job_over_http_has_speakers_in_txt_srt_and_json(client, sessions, run_worker, fake):
    _, key = create_user(sessions, Tier.PRO)
    fake.fail_next("poll", 503)  # a provider hiccup on the one chunk: retried, never billed twice

    response = submit(client, key, speech("jfk/jfk.flac"), backend="assemblyai", mode="dialogue")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    run_worker()

    job = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert job["status"] == "completed", job
    assert (job["backend"], job["mode"]) == ("assemblyai", "dialogue")
    assert fake.count("upload") == fake.count("create") == 1

    def transcript(fmt: str) -> str:
        reply = client.get(f"/v1/jobs/{job_id}/transcript?format={fmt}", headers=auth(key))
        assert reply.status_code == 200, reply.text
        return str(reply.text)

    assert transcript("txt") == f"Speaker A: {FIRST}\nSpeaker B: {SECOND}\n"
    srt = transcript("srt")
    # Captions are shaped (42 characters a line): every cue names its speaker, no word is lost.
    cues = [" ".join(block.split("\n")[2:]) for block in srt.strip().split("\n\n")]
    said = [re.fullmatch(r"\[Speaker (\w)\] (.*)", cue).groups() for cue in cues]
    assert [" ".join(text for who, text in said if who == speaker) for speaker in "AB"] == [FIRST, SECOND]
    assert srt.startswith("1\n00:00:00,")
    utterances = client.get(f"/v1/jobs/{job_id}/transcript?format=json", headers=auth(key)).json()[
        "utterances"
    ]
    assert [(u["speaker"], u["text"]) for u in utterances] == [("A", FIRST), ("B", SECOND)]
    assert (
        0
        <= utterances[0]["start"]
        < utterances[0]["end"]
        <= utterances[1]["start"]
        < utterances[1]["end"]
        <= 11.1
    )
