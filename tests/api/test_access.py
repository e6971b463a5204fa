"""Authentication, per-user isolation, listing, deleting, queues and health."""

import pytest

from core.enums import Tier
from tests.conftest import auth, create_user, speech


@pytest.fixture
def two_users(sessions):
    return create_user(sessions, Tier.PRO)[1], create_user(sessions, Tier.PRO)[1]


def submit_jfk(client, key):
    response = client.post(
        "/v1/jobs", headers=auth(key), files={"file": ("jfk.flac", speech("jfk/jfk.flac").read_bytes())}
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}])
def test_every_route_but_health_needs_a_valid_key(client, headers):
    for method, path in [
        ("get", "/v1/jobs"),
        ("post", "/v1/jobs"),
        ("get", "/v1/queues"),
        ("get", "/v1/jobs/x"),
    ]:
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "unauthorized"
    assert client.get("/health").status_code == 200


def test_another_users_job_is_404_everywhere(client, two_users, run_worker, settings):
    alice, bob = two_users
    job_id = submit_jfk(client, alice)
    run_worker()
    assert "country" in client.get(f"/v1/jobs/{job_id}/transcript", headers=auth(alice)).text.lower()
    for method, path in [
        ("get", f"/v1/jobs/{job_id}"),
        ("get", f"/v1/jobs/{job_id}/chunks"),
        ("get", f"/v1/jobs/{job_id}/transcript"),
        ("get", f"/v1/jobs/{job_id}/transcript?format=json"),
        ("delete", f"/v1/jobs/{job_id}"),
    ]:
        response = getattr(client, method)(path, headers=auth(bob))
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == "not_found"
        assert "country" not in response.text.lower()
    assert client.get("/v1/jobs", headers=auth(bob)).json()["total"] == 0
    assert client.get(f"/v1/jobs/{job_id}", headers=auth(alice)).json()["status"] == "completed"
    assert (settings.storage_dir / "jobs" / job_id).is_dir()


def test_list_is_newest_first_and_paginated(client, two_users):
    alice, _ = two_users
    ids = [submit_jfk(client, alice) for _ in range(3)]
    page = client.get("/v1/jobs?limit=2&offset=0", headers=auth(alice)).json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]
    rest = client.get("/v1/jobs?limit=2&offset=2", headers=auth(alice)).json()
    assert [j["id"] for j in rest["items"]] == ids[:1]
    assert client.get("/v1/jobs?limit=0", headers=auth(alice)).status_code == 422


def test_unknown_format_is_422(client, two_users, run_worker):
    alice, _ = two_users
    job_id = submit_jfk(client, alice)
    response = client.get(f"/v1/jobs/{job_id}/transcript?format=docx", headers=auth(alice))
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert "format" in response.json()["detail"]


def test_delete_removes_the_row_and_every_file(client, two_users, run_worker, settings):
    alice, _ = two_users
    job_id = submit_jfk(client, alice)
    run_worker()
    folder = settings.storage_dir / "jobs" / job_id
    assert (folder / "transcript.txt").is_file() and list(folder.glob("source.*"))
    assert not (folder / "chunks").exists()  # each chunk's audio went once its text was stored
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth(alice)).status_code == 204
    assert client.get(f"/v1/jobs/{job_id}", headers=auth(alice)).status_code == 404
    assert not folder.exists()


def test_queues_show_waiting_work_per_priority(client, sessions):
    _, enterprise = create_user(sessions, Tier.ENTERPRISE)
    _, free = create_user(sessions, Tier.FREE)
    submit_jfk(client, enterprise)
    submit_jfk(client, free)
    submit_jfk(client, free)
    queues = {q["name"]: q for q in client.get("/v1/queues", headers=auth(free)).json()}
    assert list(queues) == ["stt_jobs_high", "stt_jobs", "stt_jobs_low"]
    assert (
        queues["stt_jobs_high"]["queued"],
        queues["stt_jobs"]["queued"],
        queues["stt_jobs_low"]["queued"],
    ) == (1, 0, 2)


def test_health(client, sessions):
    _, key = create_user(sessions)
    submit_jfk(client, key)
    body = client.get("/health").json()
    fields = ("status", "database", "redis", "storage", "workers", "jobs_count")
    assert {k: body[k] for k in fields} == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "storage": "ok",
        "workers": 0,
        "jobs_count": 1,
    }


def test_admin_creates_users_with_a_working_key(client, sessions):
    _, admin = create_user(sessions, Tier.ENTERPRISE, is_admin=True)
    _, user = create_user(sessions, Tier.PRO)
    body = {"email": "New.Person@Example.com", "tier": "free"}
    assert client.post("/v1/admin/users", json=body, headers=auth(user)).status_code == 403
    created = client.post("/v1/admin/users", json=body, headers=auth(admin))
    assert created.status_code == 201, created.text
    new = created.json()
    assert new["email"] == "new.person@example.com" and new["tier"] == "free"
    assert client.get("/v1/jobs", headers=auth(new["api_key"])).status_code == 200
    assert client.post("/v1/admin/users", json=body, headers=auth(admin)).status_code == 409
    bad = client.post("/v1/admin/users", json={"email": "not-an-email", "tier": "gold"}, headers=auth(admin))
    assert bad.status_code == 422
