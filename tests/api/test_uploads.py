"""Direct upload: `POST /v1/uploads` hands out a URL, the file is PUT there, `POST /v1/jobs` takes
the key. Local storage (a URL the API signs and serves) and S3 (a presigned URL of the bucket, on
moto's server) run the same flow; the signed-URL checks are local storage's own."""

import base64
import json
import re
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.routers import uploads
from core import signing
from core.db import session_scope
from core.enums import JobStatus, Priority, Tier
from core.errors import PayloadTooLarge
from core.signing import Purpose
from repositories.jobs import JobRepository
from repositories.models import Upload
from storage.factory import make_storage
from storage.local import LocalStorage
from tests.audio_builders import silence, write_wav
from tests.conftest import auth, create_user, speech
from tests.s3 import served_bytes
from tests.storage.test_contract import leftovers
from worker import maintenance

MB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(settings, request: pytest.FixtureRequest):
    """S3 storage (moto) for the tests that ask for `backend` and get "s3"; local otherwise."""
    if "backend" not in request.fixturenames or request.getfixturevalue("backend") != "s3":
        return settings
    endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
    return settings.model_copy(
        update={"storage_backend": "s3", "s3_endpoint_url": endpoint, "s3_bucket": bucket}
    )


def ticket(client, key, filename="talk.flac", size=1000, **fields):
    body = {"filename": filename, "size": size, **fields}
    return client.post("/v1/uploads", headers=auth(key), json=body)


def put(client, settings, granted, content, headers=None):
    """Send the file as the ticket says: PUT to the API itself (local storage), or the form POST
    of S3's presigned upload (the fields, then the file), as any HTTP client would."""
    url, headers = granted["upload_url"], {**granted["headers"], **(headers or {})}
    if granted["method"] == "POST":
        return httpx.post(url, data=granted["fields"], files={"file": ("upload", content)})
    if url.startswith(settings.base_url + "/"):
        return client.put(url, content=content, headers=headers)
    return httpx.put(url, content=content, headers=headers)


def stored(settings) -> list[str]:
    """The objects storage holds (S3: with pending multipart uploads); local folders left out."""
    storage = make_storage(settings)
    if isinstance(storage, LocalStorage):
        return sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*") if p.is_file())
    return leftovers(storage)


def nothing_stored(settings) -> bool:
    """Not an object, a partial file or an empty folder (local), nor a pending upload (S3)."""
    return leftovers(make_storage(settings)) == []


def test_upload_then_submit_by_key(client, sessions, settings, backend):
    user_id, key = create_user(sessions, Tier.PRO)
    audio = speech("jfk/jfk.flac")
    response = ticket(client, key, "jfk.flac", audio.stat().st_size, content_type="audio/flac")
    assert response.status_code == 201, response.text
    granted = response.json()
    assert re.fullmatch(rf"uploads/{user_id}/[0-9a-f]{{32}}\.flac", granted["object_key"])
    lifetime = datetime.fromisoformat(granted["expires_at"]) - datetime.now(UTC)
    assert abs(lifetime.total_seconds() - settings.upload_url_seconds) < 5
    if backend == "local":
        assert granted["method"] == "PUT"
        assert granted["headers"] == {"Content-Type": "audio/flac"}
        assert granted["fields"] == {}
        assert granted["upload_url"].startswith(f"{settings.base_url}/v1/uploads/")
    else:  # S3's presigned POST: the key and type are fields of the signed policy
        assert granted["method"] == "POST"
        assert granted["upload_url"].rstrip("/") == f"{settings.s3_endpoint_url}/{settings.s3_bucket}"
        assert granted["fields"]["key"] == granted["object_key"]
        assert granted["fields"]["Content-Type"] == "audio/flac"
        assert {"policy", "x-amz-signature"} <= granted["fields"].keys()

    # No Authorization header: the URL (and the signed form) is the credential.
    uploaded = put(client, settings, granted, audio.read_bytes())
    assert uploaded.is_success, uploaded.text
    assert stored(settings) == [granted["object_key"]]
    assert make_storage(settings).size(granted["object_key"]) == audio.stat().st_size

    job = client.post("/v1/jobs", headers=auth(key), json={"object_key": granted["object_key"]})
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    assert job.json()["size_bytes"] == audio.stat().st_size
    # The upload became the job's source: moved, not copied.
    assert stored(settings) == [f"jobs/{job_id}/source.flac"]
    # The key is spent: submitting it again finds nothing.
    again = client.post("/v1/jobs", headers=auth(key), json={"object_key": granted["object_key"]})
    assert again.status_code == 422, again.text


@pytest.mark.parametrize(
    ("filename", "extension"),
    [
        ("../../etc/passwd.wav", ".wav"),
        ("..\\..\\windows\\system32\\talk.MP3", ".mp3"),
        ("/etc/passwd", ""),
        ("talk.<script>", ""),
        ("talk.wav\x00.exe", ".exe"),  # control characters dropped, as for multipart
        ("a" * 1000 + ".ogg", ".ogg"),
    ],
)
def test_the_key_is_the_servers_whatever_the_filename(client, sessions, filename, extension):
    user_id, key = create_user(sessions, Tier.PRO)
    response = ticket(client, key, filename)
    assert response.status_code == 201, response.text
    object_key, url = response.json()["object_key"], response.json()["upload_url"]
    assert re.fullmatch(rf"uploads/{user_id}/[0-9a-f]{{32}}{re.escape(extension)}", object_key)
    for part in ("..", "etc", "passwd", "windows", "script", "aaaa"):
        assert part not in object_key
        assert part not in url


def test_each_upload_gets_its_own_key(client, sessions):
    _, key = create_user(sessions, Tier.PRO)
    keys = {ticket(client, key, "same.wav").json()["object_key"] for _ in range(3)}
    assert len(keys) == 3


def test_another_users_upload_is_refused(client, sessions, settings):
    _, owner = create_user(sessions, Tier.PRO)
    _, intruder = create_user(sessions, Tier.PRO)
    audio = speech("jfk/jfk.flac")
    granted = ticket(client, owner, "jfk.flac", audio.stat().st_size).json()
    assert put(client, settings, granted, audio.read_bytes()).status_code == 200

    for object_key in (granted["object_key"], "jobs/x/source.flac", "uploads/../jobs/x/source.flac"):
        response = client.post("/v1/jobs", headers=auth(intruder), json={"object_key": object_key})
        assert response.status_code == 422, response.text
        assert "no uploaded object" in response.json()["detail"]
    # The owner's upload is untouched and still theirs to submit.
    assert stored(settings) == [granted["object_key"]]
    mine = client.post("/v1/jobs", headers=auth(owner), json={"object_key": granted["object_key"]})
    assert mine.status_code == 202, mine.text


def _tamper(token: str) -> str:
    payload, mac = token.split(".")
    return f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"


def test_forged_tampered_and_misused_tokens_are_refused_and_nothing_is_stored(client, sessions, settings):
    _, key = create_user(sessions, Tier.PRO)
    granted = ticket(client, key, "talk.wav", 1000).json()
    token = granted["upload_url"].rsplit("/", 1)[1]
    signer = client.app.state.signer
    object_key = granted["object_key"]
    forged = {
        "tampered mac": _tamper(token),
        "bigger size": signing.sign(
            signing.derive_key("k" * 48), "upload", {"k": object_key, "n": 10**9}, 2**40
        ),
        "a download token": signer.sign(Purpose.DOWNLOAD, {"k": object_key, "n": 1000}, 60)[0],
        "garbage": "not-a-token",
        "another key's payload": signer.sign(Purpose.UPLOAD, {"k": "jobs/x/source.wav", "n": 1000}, 60)[
            0
        ].split(".")[0]
        + "."
        + token.split(".")[1],
    }
    for name, bad in forged.items():
        response = client.put(f"/v1/uploads/{bad}", content=b"x" * 500)
        assert response.status_code == 403, (name, response.text)
        assert response.json()["error"] == "forbidden"
        assert "signature" in response.json()["detail"], name
    assert nothing_stored(settings)
    # The genuine token still works.
    assert client.put(f"/v1/uploads/{token}", content=b"x" * 500).status_code == 200
    assert stored(settings) == [object_key]


def test_upload_urls_expire(client, sessions, settings, monkeypatch):
    _, key = create_user(sessions, Tier.PRO)
    issued = signing.clock()
    monkeypatch.setattr(signing, "clock", lambda: issued)
    granted = ticket(client, key, "talk.wav", 10).json()
    assert (
        datetime.fromisoformat(granted["expires_at"]).timestamp() == int(issued) + settings.upload_url_seconds
    )

    monkeypatch.setattr(signing, "clock", lambda: issued + settings.upload_url_seconds - 1)
    assert put(client, settings, granted, b"x" * 10).status_code == 200
    make_storage(settings).delete(granted["object_key"])

    monkeypatch.setattr(signing, "clock", lambda: issued + settings.upload_url_seconds + 1)
    response = put(client, settings, granted, b"x" * 10)
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
    assert nothing_stored(settings)


def test_a_body_over_the_signed_size_is_refused_and_nothing_is_stored(client, sessions, settings):
    _, key = create_user(sessions, Tier.PRO)
    granted = ticket(client, key, "talk.wav", 2 * MB + 1).json()

    # Declared up front: refused before a byte is read.
    response = put(client, settings, granted, b"x" * (2 * MB + 2))
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert nothing_stored(settings)

    # Not declared (chunked): refused once the stream passes the size.
    def body():
        for _ in range(48):
            yield b"y" * (64 * 1024)

    response = put(client, settings, granted, body())
    assert response.status_code == 413, response.text
    assert nothing_stored(settings)

    # Exactly the size is fine.
    assert put(client, settings, granted, b"z" * (2 * MB + 1)).status_code == 200
    assert stored(settings) == [granted["object_key"]]


def test_a_stream_past_the_size_stops_mid_way_and_leaves_nothing(tmp_path):
    storage = LocalStorage(tmp_path / "objects")
    key = "uploads/u/abc.wav"
    sent: list[int] = []

    async def network():
        for _ in range(48):  # 3 MB in network-sized pieces
            sent.append(64 * 1024)
            yield b"y" * (64 * 1024)

    async def upload():
        await uploads._store_stream(storage, key, uploads._blocks(network(), 2 * MB + 1))

    with pytest.raises(PayloadTooLarge):
        anyio.run(upload)
    # Two blocks went to the partial file; the stream stopped at the first piece past the size.
    assert sum(sent) == 2 * MB + 64 * 1024
    assert leftovers(storage) == []


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
def test_s3_form_is_bound_to_the_size_asked_for_and_submit_checks_again(client, sessions, settings, backend):
    _, key = create_user(sessions, Tier.PRO)
    granted = ticket(client, key, "talk.wav", 1000).json()
    policy = json.loads(base64.b64decode(granted["fields"]["policy"]))
    # S3 refuses a file outside this signed range (tests/storage/test_contract.py checks the signature).
    assert ["content-length-range", 1, 1000] in policy["conditions"]
    # moto does not evaluate POST policies, so an oversized object lands anyway, as it would on an
    # S3-compatible server that ignores them: the submit still refuses it.
    assert put(client, settings, granted, b"x" * (settings.max_upload_bytes + 1)).is_success
    response = client.post("/v1/jobs", headers=auth(key), json={"object_key": granted["object_key"]})
    assert response.status_code == 413, response.text


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
def test_s3_submit_probes_the_upload_with_ranged_reads(client, sessions, settings, backend, tmp_path):
    _, key = create_user(sessions, Tier.PRO)
    write_wav(tmp_path / "long.wav", silence(150))
    audio = (tmp_path / "long.wav").read_bytes()  # 4.8 MB, under the tests' 5 MB limit
    granted = ticket(client, key, "long.wav", len(audio), content_type="audio/wav").json()
    assert put(client, settings, granted, audio).is_success
    sizes = served_bytes(client.app.state.storage.client)

    job = client.post("/v1/jobs", headers=auth(key), json={"object_key": granted["object_key"]})

    assert job.status_code == 202, job.text
    assert job.json()["audio_duration_seconds"] == pytest.approx(150, abs=0.1)
    assert 0 < sum(sizes) <= 1024 * 1024, sizes  # the head of the file, not its 4.8 MB


def test_uploads_waiting_unsubmitted_are_bounded_per_user(sessions, settings, redis):
    bounded = settings.model_copy(update={"max_pending_uploads": 2})
    _, key = create_user(sessions, Tier.PRO)
    _, other = create_user(sessions, Tier.PRO)
    audio = speech("jfk/jfk.flac").read_bytes()
    with TestClient(create_app(bounded, redis)) as client:
        first, _ = (ticket(client, key, "a.flac", len(audio)).json() for _ in range(2))

        refused = ticket(client, key, "c.flac", len(audio))

        assert refused.status_code == 429, refused.text
        assert "at most 2 may wait" in refused.json()["detail"]
        assert refused.headers["retry-after"]
        with session_scope(sessions) as session:
            assert session.scalar(select(func.count()).select_from(Upload)) == 2
        # Another user's grants are theirs to count.
        assert ticket(client, other, "d.flac", 10).status_code == 201
        # A submitted upload no longer waits: a new grant is given.
        assert put(client, bounded, first, audio).is_success
        job = client.post("/v1/jobs", headers=auth(key), json={"object_key": first["object_key"]})
        assert job.status_code == 202, job.text
        assert ticket(client, key, "e.flac", len(audio)).status_code == 201


def test_limits_are_checked_before_a_url_is_given(client, sessions, settings):
    user_id, key = create_user(sessions, Tier.FREE)
    over = ticket(client, key, "big.wav", settings.max_upload_bytes + 1)
    assert over.status_code == 413
    assert over.json()["error"] == "payload_too_large"
    assert ticket(client, key, "empty.wav", 0).status_code == 422
    assert ticket(client, key, "", 10).status_code == 422
    assert client.post("/v1/uploads", json={"filename": "a.wav", "size": 1}).status_code == 401

    from core.db import session_scope

    with session_scope(sessions) as session:
        for n in range(2):  # the free tier's active jobs
            JobRepository(session).create(
                id=f"active-{n}-{user_id[:8]}",
                user_id=user_id,
                priority=Priority.LOW,
                filename="a.wav",
                size_bytes=1,
                source_key=f"jobs/active-{n}/source.wav",
                status=JobStatus.PENDING,
            )
    busy = ticket(client, key, "a.wav", 10)
    assert busy.status_code == 429, busy.text
    assert busy.headers["retry-after"]
    assert nothing_stored(settings)


def test_a_url_already_submitted_takes_no_more_bytes(client, sessions, settings):
    _, key = create_user(sessions, Tier.PRO)
    audio = speech("jfk/jfk.flac").read_bytes()
    granted = ticket(client, key, "jfk.flac", len(audio)).json()
    assert put(client, settings, granted, audio).status_code == 200
    submitted = client.post("/v1/jobs", headers=auth(key), json={"object_key": granted["object_key"]})
    job_id = submitted.json()["id"]

    again = put(client, settings, granted, audio)

    assert again.status_code == 409, again.text
    assert "already submitted" in again.json()["detail"]
    assert stored(settings) == [f"jobs/{job_id}/source.flac"]


def test_uploads_never_submitted_are_swept_a_day_after_their_url_expired(
    client, sessions, settings, worker_ctx, monkeypatch
):
    _, key = create_user(sessions, Tier.PRO)
    granted = [ticket(client, key, "a.flac", 3).json() for _ in range(2)]
    for grant in granted:
        assert put(client, settings, grant, b"abc").status_code == 200
    # The first one's URL expired more than a day ago; the second is fresh.
    with session_scope(sessions) as session:
        stale = session.get(Upload, granted[0]["object_key"])
        assert stale is not None
        stale.expires_at = datetime.now(UTC) - maintenance.UPLOAD_GRACE - timedelta(minutes=1)

    assert maintenance.sweep_uploads(worker_ctx) == 1

    assert stored(settings) == [granted[1]["object_key"]]
    with session_scope(sessions) as session:
        assert list(session.scalars(select(Upload.key))) == [granted[1]["object_key"]]
    submitted = client.post("/v1/jobs", headers=auth(key), json={"object_key": granted[0]["object_key"]})
    assert submitted.status_code == 422
