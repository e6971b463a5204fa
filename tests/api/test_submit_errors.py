"""Bad input gets a clear 4xx, and leaves nothing behind in storage or the database."""

import os
import shutil

import pytest

from core.enums import Tier
from tests.conftest import auth, create_user, speech


def stored_files(settings):
    """Every file and folder in storage: a refused upload must not even leave an empty folder."""
    root = settings.storage_dir
    return sorted(p.relative_to(root) for p in root.rglob("*")) if root.exists() else []


def job_total(client, key):
    return client.get("/v1/jobs", headers=auth(key)).json()["total"]


def bad_files(tmp_path):
    elf = tmp_path / "song.mp3"
    shutil.copy("/bin/ls", elf)
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n")
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio, it is a text file\n" * 50)
    header_only = tmp_path / "silent.wav"
    header_only.write_bytes(speech("ljspeech/LJ001-0002.wav").read_bytes()[:44])
    return {"elf": elf, "pdf": pdf, "text": text, "header_only": header_only}


@pytest.mark.parametrize(
    ("kind", "status", "error"),
    [
        ("elf", 415, "unsupported_media_type"),
        ("pdf", 415, "unsupported_media_type"),
        ("text", 415, "unsupported_media_type"),
        ("header_only", 400, "bad_request"),
    ],
)
def test_not_audio_is_refused_and_nothing_is_kept(client, sessions, settings, tmp_path, kind, status, error):
    _, key = create_user(sessions)
    path = bad_files(tmp_path)[kind]
    with path.open("rb") as f:
        response = client.post("/v1/jobs", headers=auth(key), files={"file": (path.name, f)})
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["detail"]
    assert stored_files(settings) == []
    assert job_total(client, key) == 0


def test_empty_file_is_400(client, sessions, settings):
    _, key = create_user(sessions)
    response = client.post("/v1/jobs", headers=auth(key), files={"file": ("empty.wav", b"")})
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "detail": "the file is empty"}
    assert stored_files(settings) == []
    assert job_total(client, key) == 0


def test_file_over_the_limit_is_413_without_reading_it_all(client, sessions, settings):
    _, key = create_user(sessions)
    body = speech("ljspeech/LJ001-0001.wav").read_bytes()
    too_big = body + os.urandom(settings.max_upload_bytes)
    response = client.post("/v1/jobs", headers=auth(key), files={"file": ("big.wav", too_big)})
    assert response.status_code == 413
    assert "5 MB" in response.json()["detail"]
    assert stored_files(settings) == []
    assert job_total(client, key) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"priority": "urgent"}, "unknown priority"), ({"language": "klingon"}, "unknown language")],
)
def test_unknown_priority_or_language_is_422(client, sessions, settings, fields, message):
    _, key = create_user(sessions)
    audio = speech("jfk/jfk.flac")
    response = client.post(
        "/v1/jobs", headers=auth(key), files={"file": ("jfk.flac", audio.read_bytes())}, data=fields
    )
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert stored_files(settings) == []


def test_priority_above_the_tier_is_403(client, sessions, settings):
    _, key = create_user(sessions, Tier.FREE)
    audio = speech("jfk/jfk.flac").read_bytes()
    response = client.post(
        "/v1/jobs", headers=auth(key), files={"file": ("a.flac", audio)}, data={"priority": "high"}
    )
    assert response.status_code == 403
    assert "low" in response.json()["detail"]
    assert stored_files(settings) == []
    assert job_total(client, key) == 0


def test_tier_sets_the_default_priority_and_the_queue(client, sessions, redis):
    audio = speech("jfk/jfk.flac").read_bytes()
    for tier, priority, queue in [
        (Tier.FREE, "low", "stt_jobs_low"),
        (Tier.PRO, "normal", "stt_jobs"),
        (Tier.ENTERPRISE, "high", "stt_jobs_high"),
    ]:
        _, key = create_user(sessions, tier)
        job = client.post("/v1/jobs", headers=auth(key), files={"file": ("a.flac", audio)}).json()
        assert job["priority"] == priority
        queued = redis.lrange(f"rq:queue:{queue}", 0, -1)
        assert f"prepare-{job['id']}".encode() in queued


def test_not_multipart_is_415(client, sessions):
    _, key = create_user(sessions)
    response = client.post(
        "/v1/jobs",
        headers=auth(key),
        content=b"RIFF....",
    )
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_form_without_file_is_400(client, sessions):
    _, key = create_user(sessions)
    response = client.post(
        "/v1/jobs", headers=auth(key), data={"language": "en"}, files={"other": ("x", b"1")}
    )
    assert response.status_code == 400
    assert "`file`" in response.json()["detail"]


def test_client_filename_never_reaches_the_storage_path(client, sessions, settings):
    _, key = create_user(sessions)
    audio = speech("jfk/jfk.flac").read_bytes()
    response = client.post("/v1/jobs", headers=auth(key), files={"file": ("../../etc/passwd.flac", audio)})
    assert response.status_code == 202
    assert response.json()["filename"] == "passwd.flac"
    job_id = response.json()["id"]
    assert [str(p) for p in stored_files(settings)] == [
        "jobs",
        f"jobs/{job_id}",
        f"jobs/{job_id}/source.flac",
    ]
