"""The web app's session: `/v1/web/session` signs in and out with an HttpOnly cookie that every
route taking the current user accepts, and a cookie-authenticated write needs this site's origin
and the session's CSRF token. Both stacks."""

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from api.web_session import CSRF_HEADER, WEB_AUDIENCE, WEB_COOKIE
from core.db import session_scope
from core.tokens import TokenCodec
from repositories.users import UserRepository
from tests.api.auth_helpers import PASSWORD, login, register
from tests.api.web_helpers import SAME_ORIGIN, WebSession, sign_in, web_cookie, web_session
from tests.conftest import auth, create_user

EVIL = "https://evil.example"


def cookie_attributes(line: str) -> dict[str, str]:
    return {a.strip().split("=")[0].lower(): a.strip() for a in line.split(";")[1:]}


def key_names(client, token: str) -> list[str]:
    response = client.get("/v1/api-keys", headers=auth(token))
    assert response.status_code == 200, response.text
    return [key["name"] for key in response.json()]


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# --- signing in ----------------------------------------------------------------------------------


def test_signing_in_sets_an_httponly_strict_cookie_that_alone_reads_the_api(client, settings):
    assert register(client, "ada@example.com").status_code == 202
    response = sign_in(client, "Ada@Example.com", Origin=SAME_ORIGIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["email"] == "ada@example.com"
    assert {"id", "email", "tier", "is_admin"} <= body["user"].keys() and body["user"]["tier"] == "free"
    assert body["expires_in"] == settings.access_token_minutes * 60
    assert isinstance(body["csrf_token"], str) and len(body["csrf_token"]) >= 32
    assert response.headers["cache-control"] == "no-store"

    value, line = web_cookie(response)
    attributes = cookie_attributes(line)
    assert {"httponly", "samesite", "path", "max-age"} <= attributes.keys()
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/"
    assert attributes["max-age"] == f"Max-Age={body['expires_in']}"
    assert "secure" not in attributes  # plain http: a browser would drop a Secure cookie here
    assert claims(value)["aud"] == WEB_AUDIENCE

    cookie = WebSession(value, body["csrf_token"], body)
    me = client.get("/v1/auth/me", headers=cookie.reads())
    assert me.status_code == 200 and me.json()["email"] == "ada@example.com"
    jobs = client.get("/v1/jobs", headers=cookie.reads())
    assert jobs.status_code == 200 and jobs.json()["items"] == []


def test_over_https_the_cookie_is_secure(client):
    assert register(client, "ada@example.com").status_code == 202
    response = client.post(
        "https://testserver/v1/web/session", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert "secure" in cookie_attributes(web_cookie(response)[1])


def test_a_wrong_password_or_unknown_email_gets_401_and_no_cookie(client):
    assert register(client, "ada@example.com").status_code == 202
    for email, password in (("ada@example.com", "not the password at all"), ("nobody@example.com", PASSWORD)):
        response = sign_in(client, email, password, Origin=SAME_ORIGIN)
        assert response.status_code == 401, response.text
        assert response.json() == {"error": "unauthorized", "detail": "incorrect email or password"}
        assert WEB_COOKIE not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("origin", [EVIL, "null", "http://testserver.evil.example"])
def test_a_sign_in_from_another_site_is_refused(client, origin):
    assert register(client, "ada@example.com").status_code == 202
    response = sign_in(client, "ada@example.com", Origin=origin)
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden"
    assert WEB_COOKIE not in response.headers.get("set-cookie", "")
    # An API client sends no Origin at all: that is not another site.
    assert sign_in(client, "ada@example.com").status_code == 200


def test_sign_in_shares_the_rate_limits_of_the_api_login(client, settings):
    assert register(client, "ada@example.com").status_code == 202
    for _ in range(settings.login_limit_per_email):
        assert login(client, "ada@example.com", "wrong password!!").status_code == 401
    limited = sign_in(client, "ada@example.com", Origin=SAME_ORIGIN)
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) > 0
    assert WEB_COOKIE not in limited.headers.get("set-cookie", "")


# --- the session ---------------------------------------------------------------------------------


def test_get_answers_who_is_signed_in_and_renews_the_cookie(client, settings, sessions):
    session = web_session(client, "ada@example.com")
    user_id = session.body["user"]["id"]
    # A cookie twenty minutes into its half hour: the answer gives a new one, good for a full term.
    with session_scope(sessions) as db:
        version = UserRepository(db).get(user_id).token_version
    old = TokenCodec(settings).issue(
        user_id, version, datetime.now(UTC) - timedelta(minutes=20), audience=WEB_AUDIENCE
    )
    response = client.get("/v1/web/session", headers=WebSession(old.token, "", {}).reads())
    assert response.status_code == 200, response.text
    assert response.json()["user"] == session.body["user"]
    assert response.headers["cache-control"] == "no-store"
    renewed, line = web_cookie(response)
    assert claims(renewed)["exp"] >= claims(old.token)["exp"] + 20 * 60 - 5
    assert cookie_attributes(line)["max-age"] == f"Max-Age={settings.access_token_minutes * 60}"
    # The CSRF token outlives the renewal: another tab's writes keep working.
    assert response.json()["csrf_token"] == session.csrf_token
    assert client.get("/v1/auth/me", headers=WebSession(renewed, "", {}).reads()).status_code == 200


@pytest.mark.parametrize("cookie", [None, "not-a-token", "tampered"])
def test_get_without_a_valid_cookie_is_401(client, cookie):
    session = web_session(client, "ada@example.com")
    values = {None: None, "not-a-token": "not-a-token", "tampered": session.cookie[:-4] + "AAAA"}
    headers = {} if cookie is None else {"Cookie": f"{WEB_COOKIE}={values[cookie]}"}
    response = client.get("/v1/web/session", headers=headers)
    assert response.status_code == 401, response.text
    assert WEB_COOKIE not in response.headers.get("set-cookie", "")
    if cookie is not None:
        assert client.get("/v1/auth/me", headers=headers).status_code == 401


def test_sign_out_clears_the_cookie_and_is_a_write(client):
    session = web_session(client, "ada@example.com")
    refused = client.delete("/v1/web/session", headers=session.reads(Origin=SAME_ORIGIN))
    assert refused.status_code == 403, refused.text
    assert WEB_COOKIE not in refused.headers.get("set-cookie", "")

    out = client.delete("/v1/web/session", headers=session.writes())
    assert out.status_code == 204, out.text
    cleared, line = web_cookie(out)
    assert cleared in ("", '""') and "max-age=0" in line.lower()
    # Signing out again, or with a cookie that no longer works, is done already: 204.
    assert client.delete("/v1/web/session").status_code == 204


# --- CSRF ----------------------------------------------------------------------------------------


def test_a_cookie_write_without_the_csrf_token_is_refused_and_changes_nothing(client):
    session = web_session(client, "ada@example.com")
    token = login(client, "ada@example.com").json()["access_token"]
    response = client.post("/v1/api-keys", json={"name": "forged"}, headers=session.reads(Origin=SAME_ORIGIN))
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden" and CSRF_HEADER in response.json()["detail"]
    assert key_names(client, token) == []


def test_a_cookie_write_with_a_wrong_csrf_token_is_refused(client, sessions):
    session = web_session(client, "ada@example.com")
    other = web_session(client, "bob@example.com")
    token = login(client, "ada@example.com").json()["access_token"]
    for wrong in ("", "x" * 43, session.csrf_token[:-1], other.csrf_token):
        headers = session.reads(Origin=SAME_ORIGIN, **{CSRF_HEADER: wrong})
        response = client.post("/v1/api-keys", json={"name": "forged"}, headers=headers)
        assert response.status_code == 403, (wrong, response.text)
    assert key_names(client, token) == []


@pytest.mark.parametrize(
    "source",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {},
        {"Referer": f"{EVIL}/page"},
        {"Origin": EVIL, "Referer": SAME_ORIGIN},
    ],
    ids=["other-origin", "null-origin", "no-origin", "other-referer", "origin-wins"],
)
def test_a_cookie_write_with_the_right_token_from_another_site_is_refused(client, source):
    session = web_session(client, "ada@example.com")
    token = login(client, "ada@example.com").json()["access_token"]
    headers = {**session.reads(**{CSRF_HEADER: session.csrf_token}), **source}
    response = client.post("/v1/api-keys", json={"name": "forged"}, headers=headers)
    assert response.status_code == 403, response.text
    assert "cross-site" in response.json()["detail"]
    assert key_names(client, token) == []


def test_a_cookie_write_from_this_site_with_the_token_goes_through(client):
    session = web_session(client, "ada@example.com")
    token = login(client, "ada@example.com").json()["access_token"]
    created = client.post("/v1/api-keys", json={"name": "laptop"}, headers=session.writes())
    assert created.status_code == 201, created.text
    # A Referer of this site stands in for a missing Origin.
    by_referer = session.reads(Referer=f"{SAME_ORIGIN}/keys", **{CSRF_HEADER: session.csrf_token})
    assert client.post("/v1/api-keys", json={"name": "desk"}, headers=by_referer).status_code == 201
    revoked = client.delete(f"/v1/api-keys/{created.json()['id']}", headers=session.writes())
    assert revoked.status_code == 204, revoked.text
    assert key_names(client, token) == ["desk"]


def test_bearer_requests_need_no_csrf_token_and_cookie_reads_need_none_either(client, sessions):
    _, key = create_user(sessions)
    created = client.post("/v1/api-keys", json={"name": "ci"}, headers={**auth(key), "Origin": EVIL})
    assert created.status_code == 201, created.text
    session = web_session(client, "ada@example.com")
    assert client.get("/v1/api-keys", headers=session.reads(Origin=EVIL)).status_code == 200


def test_an_authorization_header_is_the_credential_even_beside_a_cookie(client):
    session = web_session(client, "ada@example.com")
    for header in ("Bearer not-a-valid-token", "Basic YWRhOnB3"):
        response = client.get("/v1/auth/me", headers=session.reads(Authorization=header))
        assert response.status_code == 401, (header, response.text)


def test_the_session_token_is_no_bearer_token_and_a_bearer_token_no_session(client):
    session = web_session(client, "ada@example.com")
    assert client.get("/v1/auth/me", headers=auth(session.cookie)).status_code == 401
    access_token = login(client, "ada@example.com").json()["access_token"]
    assert client.get("/v1/auth/me", headers=auth(access_token)).status_code == 200
    as_cookie = {"Cookie": f"{WEB_COOKIE}={access_token}"}
    assert client.get("/v1/auth/me", headers=as_cookie).status_code == 401
    assert client.get("/v1/web/session", headers=as_cookie).status_code == 401


def test_a_password_change_ends_the_cookie_session(client):
    session = web_session(client, "ada@example.com")
    change = {"current_password": PASSWORD, "new_password": "another long passphrase"}
    assert client.post("/v1/auth/password", json=change, headers=session.reads()).status_code == 403
    changed = client.post("/v1/auth/password", json=change, headers=session.writes())
    assert changed.status_code == 204, changed.text
    assert client.get("/v1/auth/me", headers=session.reads()).status_code == 401
    assert client.get("/v1/web/session", headers=session.reads()).status_code == 401
    # Signed in again, the session has a new CSRF token: the old one is worth nothing now.
    again = sign_in(client, "ada@example.com", "another long passphrase", Origin=SAME_ORIGIN)
    assert again.status_code == 200 and again.json()["csrf_token"] != session.csrf_token


# --- the dashboard -------------------------------------------------------------------------------


def make_admin(sessions, email: str) -> None:
    with session_scope(sessions) as db:
        users = UserRepository(db)
        users.update(users.get_by_email(email), is_admin=True)


def test_an_admins_web_session_opens_the_dashboard_with_the_gates_own_rules(client, sessions):
    plain = web_session(client, "plain@example.com")
    assert client.get("/dashboard/", headers=plain.reads()).status_code == 403
    admin = web_session(client, "boss@example.com")
    make_admin(sessions, "boss@example.com")
    page = client.get("/dashboard/", headers=admin.reads())
    assert page.status_code == 200 and "<title>RQ dashboard</title>" in page.text
    action = "/dashboard/queue/stt_jobs/failed/empty"
    assert client.post(action, headers=admin.reads(Origin=EVIL)).status_code == 403
    assert client.post(action, headers=admin.reads(Origin=SAME_ORIGIN)).json() == {"status": "OK"}
