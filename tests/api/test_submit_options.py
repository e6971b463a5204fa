"""`POST /v1/jobs` options (backend, mode, webhook_url) and the JSON sources (object_key, audio_url)."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from core.config import Settings
from core.db import session_scope
from core.enums import Tier
from repositories.uploads import UploadRepository
from storage.factory import make_storage
from tests.api.test_jobs_flow import submit
from tests.conftest import auth, create_user, speech


def put_upload(settings: Settings, sessions, user_id: str, name: str, data: bytes) -> str:
    """What `POST /v1/uploads` and the client's PUT leave behind: the grant and the object."""
    key = f"uploads/{user_id}/{name}"
    with session_scope(sessions) as session:
        expires_at = datetime.now(UTC) + timedelta(hours=1)
        UploadRepository(session).create(key=key, user_id=user_id, size=len(data), expires_at=expires_at)
    make_storage(settings).put_bytes(key, data)
    return key


def jobs_of(client, key):
    return client.get("/v1/jobs", headers=auth(key)).json()["items"]


def test_a_direct_upload_becomes_the_jobs_source(client, sessions, settings, run_worker):
    user_id, key = create_user(sessions, Tier.PRO)
    object_key = put_upload(settings, sessions, user_id, "0a1b2c.flac", speech("jfk/jfk.flac").read_bytes())

    response = client.post(
        "/v1/jobs", headers=auth(key), json={"object_key": object_key, "filename": "speech.flac"}
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["filename"] == "speech.flac"
    assert job["size_bytes"] == speech("jfk/jfk.flac").stat().st_size
    assert abs(job["audio_duration_seconds"] - 11.0) < 0.1
    storage = make_storage(settings)
    assert not storage.exists(object_key)
    assert storage.exists(f"jobs/{job['id']}/source.flac")

    run_worker()
    text = client.get(f"/v1/jobs/{job['id']}/transcript", headers=auth(key)).text
    assert "country" in text.lower(), text

    again = client.post("/v1/jobs", headers=auth(key), json={"object_key": object_key})
    assert again.status_code == 422
    assert "no uploaded object" in again.json()["detail"]


def test_another_users_upload_cannot_be_claimed(client, sessions, settings):
    alice_id, _ = create_user(sessions, Tier.PRO)
    _, bob = create_user(sessions, Tier.PRO)
    object_key = put_upload(settings, sessions, alice_id, "abc.flac", speech("jfk/jfk.flac").read_bytes())

    for candidate in (object_key, f"uploads/{alice_id}/../{alice_id}/abc.flac", "jobs/x/source.flac"):
        response = client.post("/v1/jobs", headers=auth(bob), json={"object_key": candidate})
        assert response.status_code == 422, response.text
        assert "no uploaded object" in response.json()["detail"]
    assert make_storage(settings).exists(object_key)
    assert jobs_of(client, bob) == []


def test_a_refused_upload_stays_where_it_was(client, sessions, settings):
    user_id, key = create_user(sessions, Tier.PRO)
    object_key = put_upload(settings, sessions, user_id, "notes.mp3", b"this is not audio\n" * 100)

    response = client.post("/v1/jobs", headers=auth(key), json={"object_key": object_key})

    assert response.status_code == 415, response.text
    storage = make_storage(settings)
    assert storage.exists(object_key)  # the client's upload is not lost with the refusal
    assert b"".join(storage.iter_bytes(object_key)) == b"this is not audio\n" * 100
    assert jobs_of(client, key) == []


def test_an_upload_over_the_tier_limit_is_refused(client, sessions, settings):
    user_id, key = create_user(sessions, Tier.PRO)
    # The test settings cap uploads at 5 MB.
    object_key = put_upload(settings, sessions, user_id, "big.wav", b"\0" * (6 * 1024 * 1024))

    response = client.post("/v1/jobs", headers=auth(key), json={"object_key": object_key})

    assert response.status_code == 413
    assert make_storage(settings).exists(object_key)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "exactly one of `object_key` and `audio_url`"),
        ({"object_key": "a", "audio_url": "https://example.com/a.mp3"}, "exactly one"),
        ({"object_key": "a", "colour": "red"}, "colour"),
        ({"object_key": "a", "mode": "choir"}, "unknown mode 'choir'"),
        ({"object_key": "a", "backend": "gpu"}, "unknown backend 'gpu'"),
        ({"object_key": "a", "speakers": 2}, "speakers: speaker counts need mode 'dialogue'"),
        ({"object_key": "a", "backend": "assemblyai"}, "assemblyai backend is not configured"),
        ({"audio_url": "ftp://example.com/a.mp3"}, "audio_url refused"),
        ({"object_key": "a", "webhook_url": "http://127.0.0.1:9/hook"}, "webhook_url refused"),
    ],
)
def test_bad_json_is_refused_with_the_reason(client, sessions, body, detail):
    _, key = create_user(sessions, Tier.PRO)
    response = client.post("/v1/jobs", headers=auth(key), json=body)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]
    assert jobs_of(client, key) == []


def test_malformed_json_is_a_422(client, sessions):
    _, key = create_user(sessions, Tier.PRO)
    response = client.post(
        "/v1/jobs", headers={**auth(key), "Content-Type": "application/json"}, content=b"{not json"
    )
    assert response.status_code == 422


def test_backend_choice_follows_the_tier(client, sessions, settings):
    settings.assemblyai_api_key = SecretStr("configured")
    _, free = create_user(sessions, Tier.FREE)
    _, pro = create_user(sessions, Tier.PRO)
    audio = speech("jfk/jfk.flac")

    refused = submit(client, free, audio, backend="assemblyai")
    assert refused.status_code == 403
    assert "free tier may choose the backend local" in refused.json()["detail"]

    accepted = submit(client, pro, audio, backend="assemblyai", mode="dialogue")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["backend"] == "assemblyai"
    assert accepted.json()["mode"] == "dialogue"

    plain = submit(client, pro, audio).json()
    assert (plain["backend"], plain["mode"]) == (None, "mono")


def test_a_url_job_is_recorded_for_the_worker_to_fetch(client, sessions, settings):
    settings.webhook_allow_private = True
    _, key = create_user(sessions, Tier.PRO)
    url = "http://127.0.0.1:9/recordings/Team%20call.mp3?sig=abc"

    response = client.post("/v1/jobs", headers=auth(key), json={"audio_url": url})

    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["status"], job["audio_url"], job["filename"], job["size_bytes"]) == (
        "pending",
        url,
        "Team call.mp3",
        0,
    )
