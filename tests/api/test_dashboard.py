"""The RQ dashboard at /dashboard: admins only, by bearer credential or the browser sign-in's
session cookie; everyone else gets 401/403 and never the page. Both stacks.

The session cookie is `Secure`, so the test client (plain http) does not send it back by itself:
each test sends it explicitly, which also keeps every request's credentials in view."""

from typing import Any

import pytest
from rq import Queue, Worker
from rq.serializers import JSONSerializer
from sqlalchemy.orm import Session, sessionmaker

from api.dashboard import SESSION_COOKIE
from core.db import session_scope
from core.enums import Tier
from core.queues import QUEUE_NAMES
from repositories.users import UserRepository
from tests.api.auth_helpers import PASSWORD, account, login, register
from tests.conftest import auth, create_user

PAGE_MARK = "<title>RQ dashboard</title>"
ORIGIN = {"Origin": "http://testserver"}
BROWSER = {"Accept": "text/html,application/xhtml+xml"}
GATED = ["/dashboard", "/dashboard/", "/dashboard/0/data/queues.json", "/dashboard/static/css/main.css"]


def make_admin(client: Any, sessions: sessionmaker[Session], email: str) -> None:
    """A registered user (with a password) turned admin: no API grants the admin flag."""
    assert register(client, email).status_code == 202
    with session_scope(sessions) as session:
        users = UserRepository(session)
        user = users.get_by_email(email)
        assert user is not None
        users.update(user, is_admin=True)


def sign_in(client: Any, email: str, password: str = PASSWORD, **headers: str) -> Any:
    return client.post(
        "/dashboard/login",
        data={"email": email, "password": password},
        headers={**ORIGIN, **BROWSER, **headers},
        follow_redirects=False,
    )


def session_cookie(response: Any) -> tuple[str, str]:
    """(value, the whole Set-Cookie line) of the session cookie the response sets."""
    lines = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")]
    assert len(lines) == 1, response.headers
    return lines[0].split(";")[0].split("=", 1)[1], lines[0]


def with_cookie(value: str, **headers: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={value}", **headers}


def assert_refused(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    assert PAGE_MARK not in response.text and "rq_dashboard" not in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


# --- who gets in ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", GATED)
def test_anonymous_requests_get_401_and_never_the_dashboard(client, path):
    response = client.get(path, follow_redirects=False)
    assert_refused(response, 401)
    assert response.json() == {"error": "unauthorized", "detail": "missing or invalid credentials"}
    # A browser gets the sign-in form instead of JSON, with the same status.
    page = client.get(path, headers=BROWSER, follow_redirects=False)
    assert_refused(page, 401)
    assert 'action="/dashboard/login"' in page.text and page.headers["cache-control"] == "no-store"


def test_non_admins_get_403_by_api_key_or_access_token(client, sessions):
    _, key = create_user(sessions)
    _, token = account(client, "someone@example.com")
    for credential in (key, token):
        for path in GATED:
            response = client.get(path, headers=auth(credential), follow_redirects=False)
            assert_refused(response, 403)
            assert response.json()["error"] == "forbidden"
        assert_refused(client.get("/dashboard/", headers={**auth(credential), **BROWSER}), 403)


def test_an_unknown_api_key_gets_401(client):
    assert_refused(client.get("/dashboard/", headers=auth("vbt_" + "x" * 40)), 401)


def test_an_admin_api_key_opens_the_dashboard_with_its_assets_under_the_prefix(client, sessions):
    _, key = create_user(sessions, Tier.ENTERPRISE, is_admin=True)
    bare = client.get("/dashboard", headers=auth(key), follow_redirects=False)
    assert bare.status_code == 307 and bare.headers["location"] == "/dashboard/"
    page = client.get("/dashboard/", headers=auth(key))
    assert page.status_code == 200 and PAGE_MARK in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert 'href="/dashboard/static/css/bootstrap.min.css"' in page.text
    assert client.get("/dashboard/static/js/jquery-3.5.1.min.js", headers=auth(key)).status_code == 200
    # The three queues are listed before any work was ever queued on them.
    queues = client.get("/dashboard/0/data/queues.json", headers=auth(key)).json()["queues"]
    assert sorted(q["name"] for q in queues) == sorted(QUEUE_NAMES.values())
    # One Redis: another instance number is not a way to reach a different server.
    assert client.get("/dashboard/1/data/queues.json", headers=auth(key)).status_code == 404


def test_a_busy_worker_is_shown_with_its_json_task(client, sessions, redis):
    """rq-dashboard reads workers with pickle unless told otherwise; our tasks are JSON."""
    _, key = create_user(sessions, Tier.ENTERPRISE, is_admin=True)
    queue = Queue("stt_jobs", connection=redis, serializer=JSONSerializer)
    task = queue.enqueue("worker.tasks.prepare", "job-1", job_id="prepare-job-1")
    worker = Worker([queue], connection=redis, serializer=JSONSerializer, name="busy-worker")
    worker.register_birth()
    worker.set_current_job_id(task.id)
    response = client.get("/dashboard/0/data/workers.json", headers=auth(key))
    assert response.status_code == 200, response.text
    [shown] = response.json()["workers"]
    assert shown["name"] == "busy-worker"
    assert shown["current_job"]["call_string"] == "worker.tasks.prepare('job-1')"


# --- browser sign-in -----------------------------------------------------------------------------


def test_the_sign_in_form_is_served(client):
    page = client.get("/dashboard/login")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'name="email"' in page.text and 'name="password"' in page.text
    assert page.headers["x-frame-options"] == "DENY"


def test_a_wrong_password_gets_401_and_no_cookie(client, sessions):
    make_admin(client, sessions, "boss@example.com")
    response = sign_in(client, "boss@example.com", "not the password at all")
    assert_refused(response, 401)
    assert "incorrect email or password" in response.text
    assert_refused(sign_in(client, "nobody@example.com"), 401)


def test_a_non_admin_password_gets_403_and_no_cookie(client):
    assert register(client, "plain@example.com").status_code == 202
    response = sign_in(client, "plain@example.com")
    assert_refused(response, 403)
    assert "admin account" in response.text


def test_an_admin_signs_in_and_the_cookie_opens_the_dashboard(client, sessions):
    make_admin(client, sessions, "boss@example.com")
    response = sign_in(client, "Boss@Example.com")
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/"
    value, line = session_cookie(response)
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in line.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= attributes.keys()
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/dashboard"
    page = client.get("/dashboard/", headers=with_cookie(value))
    assert page.status_code == 200 and PAGE_MARK in page.text
    queues = client.get("/dashboard/0/data/queues.json", headers=with_cookie(value))
    assert queues.status_code == 200
    # The cookie is a dashboard session, not an API credential.
    assert client.get("/v1/auth/me", headers=auth(value)).status_code == 401


def test_a_cookie_from_before_a_password_change_no_longer_works(client, sessions):
    make_admin(client, sessions, "boss@example.com")
    value, _ = session_cookie(sign_in(client, "boss@example.com"))
    assert client.get("/dashboard/", headers=with_cookie(value)).status_code == 200
    token = login(client, "boss@example.com").json()["access_token"]
    changed = client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase"},
        headers=auth(token),
    )
    assert changed.status_code == 204, changed.text
    assert_refused(client.get("/dashboard/", headers=with_cookie(value)), 401)


def test_a_demoted_admins_cookie_gets_403(client, sessions):
    make_admin(client, sessions, "boss@example.com")
    value, _ = session_cookie(sign_in(client, "boss@example.com"))
    with session_scope(sessions) as session:
        users = UserRepository(session)
        users.update(users.get_by_email("boss@example.com"), is_admin=False)
    assert_refused(client.get("/dashboard/", headers=with_cookie(value)), 403)


@pytest.mark.parametrize("kind", ["garbage", "access_token", "tampered"])
def test_a_forged_cookie_gets_401(client, sessions, kind):
    make_admin(client, sessions, "boss@example.com")
    genuine, _ = session_cookie(sign_in(client, "boss@example.com"))
    value = {
        "garbage": "not-a-token",
        # An API access token is not a dashboard session, even the admin's own.
        "access_token": login(client, "boss@example.com").json()["access_token"],
        "tampered": genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB"),
    }[kind]
    assert_refused(client.get("/dashboard/", headers=with_cookie(value)), 401)
    assert_refused(client.get("/dashboard/", headers=with_cookie(value, **BROWSER)), 401)


def test_sign_in_is_rate_limited_like_the_api_login(client, sessions, settings):
    make_admin(client, sessions, "boss@example.com")
    for _ in range(settings.login_limit_per_email):
        assert sign_in(client, "boss@example.com", "wrong password!!").status_code == 401
    limited = sign_in(client, "boss@example.com")
    assert_refused(limited, 429)
    assert int(limited.headers["retry-after"]) > 0


def test_sign_out_clears_the_cookie(client, sessions):
    make_admin(client, sessions, "boss@example.com")
    value, _ = session_cookie(sign_in(client, "boss@example.com"))
    out = client.post("/dashboard/logout", headers=with_cookie(value, **ORIGIN), follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    cleared, line = session_cookie(out)
    assert cleared in ("", '""') and "max-age=0" in line.lower()


# --- cross-site requests -------------------------------------------------------------------------


def test_cross_site_posts_with_the_cookie_are_refused(client, sessions):
    make_admin(client, sessions, "boss@example.com")
    value, _ = session_cookie(sign_in(client, "boss@example.com"))
    action = "/dashboard/queue/stt_jobs/failed/empty"
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"}):
        assert_refused(client.post(action, headers=with_cookie(value, **headers)), 403)
    # Referer stands in for a missing Origin.
    referer = {"Referer": "http://testserver/dashboard/0/view/jobs"}
    assert client.post(action, headers=with_cookie(value, **referer)).json() == {"status": "OK"}
    assert client.post(action, headers=with_cookie(value, **ORIGIN)).json() == {"status": "OK"}
    # rq-dashboard would requeue on a GET too: only the checked POST may change state.
    assert client.get("/dashboard/requeue/stt_jobs", headers=with_cookie(value)).status_code == 405


def test_a_cross_site_sign_in_is_refused(client, sessions):
    make_admin(client, sessions, "boss@example.com")
    assert_refused(sign_in(client, "boss@example.com", Origin="https://evil.example"), 403)
