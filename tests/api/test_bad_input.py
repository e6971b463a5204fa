"""Input the database or Python cannot take is a 4xx that names the field, never a 500."""

import logging
from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest

from api.fields import MAX_OFFSET
from core.enums import Tier
from tests.api.test_submit_errors import job_total, stored_files
from tests.conftest import auth, create_user, speech

NUL = "\x00"
BIGINT_MAX = 2**63 - 1
BOUNDARY = "b0undary"


def assert_refused(response, field, status=422):
    assert response.status_code == status, response.text
    assert field in response.json()["detail"]


# --- NUL: PostgreSQL refuses it in any text value ------------------------------------------------


def test_a_nul_in_the_login_username_is_422_without_credentials(client):
    response = client.post("/v1/auth/login", data={"username": f"x{NUL}y", "password": "whatever"})
    assert_refused(response, "username")


def test_a_nul_in_the_dashboard_sign_in_email_is_422(client):
    response = client.post("/dashboard/login", data={"email": f"x{NUL}y", "password": "whatever"})
    assert_refused(response, "email")


@pytest.mark.parametrize("param", ["q", "language"])
def test_a_nul_in_a_job_search_parameter_is_422(client, sessions, param):
    _, key = create_user(sessions)
    response = client.get("/v1/jobs", params={param: NUL}, headers=auth(key))
    assert_refused(response, param)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs/%00"),
        ("GET", "/v1/jobs/%00/chunks"),
        ("GET", "/v1/jobs/%00/transcript"),
        ("GET", "/v1/jobs/%00/download"),
        ("GET", "/v1/jobs/%00/webhooks"),
        ("POST", "/v1/jobs/%00/cancel"),
        ("POST", "/v1/jobs/%00/retry"),
        ("DELETE", "/v1/jobs/%00"),
    ],
)
def test_a_nul_in_a_job_id_is_422(client, sessions, method, path):
    _, key = create_user(sessions)
    assert_refused(client.request(method, path, headers=auth(key)), "job_id")


def test_a_nul_in_an_api_key_id_is_422(client, sessions):
    _, key = create_user(sessions)
    assert_refused(client.delete("/v1/api-keys/%00", headers=auth(key)), "key_id")


def test_a_nul_in_a_user_id_is_422(client, sessions):
    _, admin = create_user(sessions, Tier.ENTERPRISE, is_admin=True)
    response = client.patch("/v1/admin/users/%00", json={"tier": "pro"}, headers=auth(admin))
    assert_refused(response, "user_id")


def test_a_nul_in_an_api_key_name_is_422(client, sessions):
    _, key = create_user(sessions)
    response = client.post("/v1/api-keys", json={"name": f"lap{NUL}top"}, headers=auth(key))
    assert_refused(response, "name")


def test_a_nul_in_an_object_key_is_422(client, sessions):
    _, key = create_user(sessions)
    response = client.post("/v1/jobs", json={"object_key": f"uploads/x{NUL}.wav"}, headers=auth(key))
    assert_refused(response, "object_key")


def file_part(content_type, body=b""):
    """The start of a multipart body with one `file` part, written by hand: httpx will not send a
    control character in a part's header."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.flac"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    )
    return head.encode("latin-1") + body


@pytest.mark.parametrize("content_type", [f"audio/fl{NUL}ac", "audio/" + "x" * 300], ids=["nul", "too_long"])
def test_a_bad_content_type_of_the_file_part_is_400_and_nothing_is_kept(
    client, sessions, settings, content_type
):
    _, key = create_user(sessions)
    audio = speech("jfk/jfk.flac").read_bytes()
    response = client.post(
        "/v1/jobs",
        headers={**auth(key), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        content=file_part(content_type, audio) + f"\r\n--{BOUNDARY}--\r\n".encode(),
    )
    assert_refused(response, "Content-Type of the `file` part", status=400)
    assert stored_files(settings) == []
    assert job_total(client, key) == 0


# --- numbers and times past what the database or datetime can hold ------------------------------


@pytest.mark.parametrize("offset", [BIGINT_MAX + 1, 10**7])
def test_an_offset_past_the_bound_is_422(client, sessions, offset):
    _, key = create_user(sessions, Tier.ENTERPRISE, is_admin=True)
    for path in ("/v1/jobs", "/v1/admin/users"):
        assert_refused(client.get(path, params={"offset": offset}, headers=auth(key)), "offset")


def test_the_largest_offset_allowed_is_an_empty_page(client, sessions):
    _, key = create_user(sessions)
    response = client.get("/v1/jobs", params={"offset": MAX_OFFSET}, headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


def test_a_purge_older_than_datetime_can_count_back_is_422(client, sessions):
    _, admin = create_user(sessions, Tier.ENTERPRISE, is_admin=True)
    response = client.delete("/v1/admin/jobs", params={"older_than_days": 2932896}, headers=auth(admin))
    assert_refused(response, "older_than_days")


def test_created_after_with_any_offset_python_accepts_is_compared_in_utc(client, sessions):
    _, key = create_user(sessions)
    audio = speech("jfk/jfk.flac").read_bytes()
    assert client.post("/v1/jobs", headers=auth(key), files={"file": ("a.flac", audio)}).status_code == 202
    # PostgreSQL takes zone offsets up to 15:59 only; Python (and RFC 3339) up to 23:59.
    far_east = timezone(timedelta(hours=23, minutes=59))
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(far_east).isoformat()
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).astimezone(far_east).isoformat()
    for moment, total in ((an_hour_ago, 1), (in_an_hour, 0)):
        response = client.get("/v1/jobs", params={"created_after": moment}, headers=auth(key))
        assert response.status_code == 200, response.text
        assert response.json()["total"] == total


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"])
def test_a_created_after_that_is_no_moment_in_utc_is_422(client, sessions, moment):
    _, key = create_user(sessions)
    response = client.get("/v1/jobs", params={"created_after": moment}, headers=auth(key))
    assert_refused(response, "created_after")


# --- JSON submission ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["audio_url", "object_key"])
def test_an_empty_source_is_422(client, sessions, field):
    _, key = create_user(sessions)
    response = client.post("/v1/jobs", json={field: ""}, headers=auth(key))
    assert_refused(response, field)
    assert job_total(client, key) == 0


# --- a client that goes away ----------------------------------------------------------------------


def test_a_client_that_disconnects_mid_upload_costs_one_log_line_and_leaves_nothing(
    client, sessions, settings, caplog
):
    """Calls the ASGI app as a server would, with a body that stops half way: the app must not
    raise (the server would log the traceback) and logs a single line."""
    _, key = create_user(sessions)
    messages = [
        {"type": "http.request", "body": file_part("audio/flac", b"x" * 4096), "more_body": True},
        {"type": "http.disconnect"},
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/jobs",
        "raw_path": b"/v1/jobs",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", b"1000000"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        pass

    caplog.set_level(logging.DEBUG)
    caplog.clear()
    anyio.run(client.app, scope, receive, send)

    # asyncio's own debug line about the event loop anyio.run starts is not the service's.
    ours = [r for r in caplog.records if r.name != "asyncio"]
    assert [r.getMessage() for r in ours] == ["request.client_disconnected"]
    assert not ours[0].exc_info
    assert ours[0].route == "/v1/jobs"
    assert stored_files(settings) == []
    assert job_total(client, key) == 0
