"""Accounts: registration, password login, tokens, API keys, disabled users, admin, rate limits."""

import logging
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.schemas import RegistrationOut
from core.db import session_scope
from core.enums import Tier
from core.ratelimit import KEY_PREFIX
from core.security import new_api_key
from repositories.models import User
from repositories.users import ApiKeyRepository, UserRepository
from tests.api.auth_helpers import (
    PASSWORD,
    account,
    key_row,
    login,
    make_key,
    register,
    submit_jfk,
    user_row,
)
from tests.conftest import auth, create_user

REGISTERED = RegistrationOut.model_fields["detail"].default
# --- register, log in, me -------------------------------------------------------------------------


def test_register_login_me(client, sessions):
    created = register(client, "Ada@Example.com")
    assert created.status_code == 202, created.text
    assert created.json() == {"email": "ada@example.com", "detail": REGISTERED}

    row = user_row(sessions, "ada@example.com")
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
    assert row.is_active and row.token_version == 0 and row.tier == Tier.FREE

    response = login(client, "ADA@example.com ")
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 30 * 60
    assert response.headers["cache-control"] == "no-store"

    me = client.get("/v1/auth/me", headers=auth(token["access_token"]))
    assert me.status_code == 200
    body = me.json()
    assert body["id"] == row.id and body["email"] == "ada@example.com"
    assert body["tier"] == "free" and body["is_admin"] is False
    assert set(body) == {"id", "email", "tier", "is_admin", "created_at"}


def test_register_refuses_short_passwords_and_bad_emails(client, sessions):
    short = register(client, "bob@example.com", "123456789")
    assert short.status_code == 422 and "password" in short.json()["detail"]
    bad = register(client, "not-an-email")
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


class _Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def account_events() -> Iterator[_Events]:
    """The records of api.accounts (a handler of its own: the run may go without pytest's logging)."""
    logger, handler = logging.getLogger("api.accounts"), _Events()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_registering_a_taken_email_answers_as_for_a_new_one_and_changes_nothing(
    client, sessions, account_events, monkeypatch
):
    owner_id, _ = account(client, "bob@example.com", "1234567890")
    owner = make_key(client, login(client, "bob@example.com", "1234567890").json()["access_token"])
    before = user_row(sessions, "bob@example.com")
    hashed = []
    real_hash = PasswordHasher.hash

    def counting_hash(self, password, **kwargs):
        hashed.append(password)
        return real_hash(self, password, **kwargs)

    monkeypatch.setattr(PasswordHasher, "hash", counting_hash)
    new = register(client, "carol@example.com", "another password")
    taken = register(client, "BOB@example.com", "another password")
    assert hashed == ["another password"] * 2, "one argon2 hash each: the time does not tell them apart"
    assert taken.status_code == new.status_code == 202
    assert taken.json() == {"email": "bob@example.com", "detail": REGISTERED}
    assert new.json() == {"email": "carol@example.com", "detail": REGISTERED}
    assert set(taken.headers) == set(new.headers)

    # No second account; the owner's password, tier, token version and keys are as they were.
    with session_scope(sessions) as session:
        emails = session.scalars(select(User.email).order_by(User.email)).all()
    assert emails == ["bob@example.com", "carol@example.com"]
    after = user_row(sessions, "bob@example.com")
    assert (after.id, after.password_hash, after.token_version, after.tier, after.created_at) == (
        before.id,
        before.password_hash,
        before.token_version,
        before.tier,
        before.created_at,
    )
    assert login(client, "bob@example.com", "another password").status_code == 401
    assert login(client, "bob@example.com", "1234567890").status_code == 200
    assert client.get("/v1/auth/me", headers=auth(owner["key"])).json()["id"] == owner_id
    # The attempt is on record against the account, for the operator and the owner to see.
    attempts = [r for r in account_events.records if r.getMessage() == "user.register_existing"]
    assert [r.__dict__["user_id"] for r in attempts] == [owner_id]


def test_wrong_password_and_unknown_email_get_the_same_401_after_one_hash_each(client, monkeypatch):
    account(client, "cy@example.com")
    verified = []
    real_verify = PasswordHasher.verify

    def counting_verify(self, hash, password):
        verified.append(hash)
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    wrong = login(client, "cy@example.com", "not the password")
    unknown = login(client, "nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json() == unknown.json() == {"error": "unauthorized", "detail": "incorrect email or password"}
    )
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"
    # The unknown email spent a real argon2id verification too (against a dummy hash).
    assert len(verified) == 2 and all(h.startswith("$argon2id$") for h in verified)


def test_a_user_made_by_an_admin_has_no_password_to_log_in_with(client, sessions):
    create_user(sessions, Tier.PRO, email="keyonly@example.com")
    response = login(client, "keyonly@example.com", "anything at all")
    assert response.status_code == 401 and response.json()["detail"] == "incorrect email or password"


# --- password change -----------------------------------------------------------------------------


def test_password_change_revokes_every_older_token(client, sessions):
    _, first = account(client, "dee@example.com")
    second = login(client, "dee@example.com").json()["access_token"]
    key = make_key(client, first)["key"]

    wrong = client.post(
        "/v1/auth/password",
        json={"current_password": "not it at all", "new_password": "a brand new secret"},
        headers=auth(first),
    )
    assert wrong.status_code == 403
    assert user_row(sessions, "dee@example.com").token_version == 0
    too_short = client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=auth(first),
    )
    assert too_short.status_code == 422

    changed = client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new secret"},
        headers=auth(first),
    )
    assert changed.status_code == 204, changed.text
    assert user_row(sessions, "dee@example.com").token_version == 1
    for old in (first, second):
        response = client.get("/v1/auth/me", headers=auth(old))
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert login(client, "dee@example.com").status_code == 401
    fresh = login(client, "dee@example.com", "a brand new secret")
    assert fresh.status_code == 200
    assert client.get("/v1/auth/me", headers=auth(fresh.json()["access_token"])).status_code == 200
    # API keys are separate credentials: a password change leaves them working.
    assert client.get("/v1/auth/me", headers=auth(key)).status_code == 200


# --- API keys ------------------------------------------------------------------------------------


def test_api_keys_create_list_use_and_revoke(client, sessions):
    user_id, token = account(client, "eve@example.com")
    created = make_key(client, token, "laptop")
    plaintext = created["key"]
    assert plaintext.startswith(f"vbt_{created['prefix']}_")
    assert created["name"] == "laptop" and created["last_used_at"] is None
    other = make_key(client, token, "ci")

    listed = client.get("/v1/api-keys", headers=auth(token))
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()] == [other["id"], created["id"]]
    assert all(set(k) == {"id", "name", "prefix", "created_at", "last_used_at"} for k in listed.json())
    row = key_row(sessions, created["id"])
    assert plaintext not in listed.text and row.key_hash not in listed.text
    assert row.user_id == user_id and row.key_hash != plaintext and row.last_used_at is None

    me = client.get("/v1/auth/me", headers=auth(plaintext))
    assert me.status_code == 200 and me.json()["id"] == user_id
    assert key_row(sessions, created["id"]).last_used_at is not None

    assert client.delete(f"/v1/api-keys/{created['id']}", headers=auth(token)).status_code == 204
    assert key_row(sessions, created["id"]).revoked_at is not None
    revoked = client.get("/v1/auth/me", headers=auth(plaintext))
    assert revoked.status_code == 401 and revoked.json()["error"] == "unauthorized"
    assert [k["id"] for k in client.get("/v1/api-keys", headers=auth(token)).json()] == [other["id"]]
    again = client.delete(f"/v1/api-keys/{created['id']}", headers=auth(token))
    assert again.status_code == 404 and again.json()["error"] == "not_found"
    assert client.get("/v1/auth/me", headers=auth(other["key"])).status_code == 200


def test_api_key_bodies_are_validated(client):
    _, token = account(client, "fay@example.com")
    for body in ({}, {"name": ""}, {"name": "x" * 101}):
        assert client.post("/v1/api-keys", json=body, headers=auth(token)).status_code == 422
    assert client.post("/v1/api-keys", json={"name": "ok"}).status_code == 401


def test_a_job_can_be_submitted_with_a_token_or_an_api_key(client):
    _, token = account(client, "gus@example.com")
    key = make_key(client, token)["key"]
    with_token = submit_jfk(client, token)
    with_key = submit_jfk(client, key)
    assert with_token.status_code == 202, with_token.text
    assert with_key.status_code == 202, with_key.text
    # A new account is on the free tier, so its jobs run at low priority.
    assert with_token.json()["priority"] == with_key.json()["priority"] == "low"
    listed = client.get("/v1/jobs", headers=auth(key)).json()
    assert {j["id"] for j in listed["items"]} == {with_token.json()["id"], with_key.json()["id"]}


def test_an_operator_chosen_admin_key_still_authenticates(client, sessions):
    chosen = "operator-chosen-key-0123456789"  # VERBATIM_BOOTSTRAP_API_KEY need not start with vbt_
    with session_scope(sessions) as session:
        admin = UserRepository(session).create_user("ops@example.com", Tier.ENTERPRISE, is_admin=True)
        ApiKeyRepository(session).add_key(admin, new_api_key(chosen))
    me = client.get("/v1/auth/me", headers=auth(chosen))
    assert me.status_code == 200 and me.json()["email"] == "ops@example.com"
    assert client.get("/v1/auth/me", headers=auth(chosen + "x")).status_code == 401


# --- disabled users and admin --------------------------------------------------------------------


@pytest.fixture
def admin_key(sessions):
    return create_user(sessions, Tier.ENTERPRISE, is_admin=True, email="root@example.com")[1]


def test_a_disabled_users_tokens_and_keys_are_refused_until_enabled(client, sessions, admin_key):
    user_id, token = account(client, "hal@example.com")
    key = make_key(client, token)["key"]

    disabled = client.patch(f"/v1/admin/users/{user_id}", json={"is_active": False}, headers=auth(admin_key))
    assert disabled.status_code == 200 and disabled.json()["is_active"] is False
    assert user_row(sessions, "hal@example.com").is_active is False
    for credential in (token, key):
        for method, path in (("get", "/v1/auth/me"), ("get", "/v1/jobs"), ("post", "/v1/api-keys")):
            response = getattr(client, method)(path, headers=auth(credential))
            assert response.status_code == 401, (method, path)
            assert response.json()["error"] == "unauthorized"
    assert login(client, "hal@example.com").status_code == 401

    enabled = client.patch(f"/v1/admin/users/{user_id}", json={"is_active": True}, headers=auth(admin_key))
    assert enabled.status_code == 200
    assert client.get("/v1/auth/me", headers=auth(token)).status_code == 200
    assert client.get("/v1/auth/me", headers=auth(key)).status_code == 200


def test_admin_lists_and_patches_users(client, sessions, admin_key):
    ids = [account(client, f"user{i}@example.com")[0] for i in range(3)]
    page = client.get("/v1/admin/users?limit=2&offset=0", headers=auth(admin_key))
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == 4 and body["limit"] == 2 and body["offset"] == 0 and len(body["items"]) == 2
    rest = client.get("/v1/admin/users?limit=2&offset=2", headers=auth(admin_key)).json()
    everyone = {u["email"]: u for u in body["items"] + rest["items"]}
    assert set(everyone) == {
        "root@example.com",
        "user0@example.com",
        "user1@example.com",
        "user2@example.com",
    }
    assert everyone["user0@example.com"]["has_password"] is True
    assert everyone["root@example.com"]["has_password"] is False
    assert everyone["root@example.com"]["is_admin"] is True

    patched = client.patch(f"/v1/admin/users/{ids[0]}", json={"tier": "enterprise"}, headers=auth(admin_key))
    assert patched.status_code == 200, patched.text
    assert patched.json()["tier"] == "enterprise" and patched.json()["is_active"] is True
    assert user_row(sessions, "user0@example.com").tier == Tier.ENTERPRISE
    assert user_row(sessions, "user1@example.com").tier == Tier.FREE

    missing = client.patch("/v1/admin/users/nope", json={"tier": "pro"}, headers=auth(admin_key))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    for bad in ({"tier": "gold"}, {"is_admin": True}, {"is_active": "sometimes"}):
        assert client.patch(f"/v1/admin/users/{ids[1]}", json=bad, headers=auth(admin_key)).status_code == 422
    assert user_row(sessions, "user1@example.com").is_admin is False


def test_an_admin_cannot_disable_themselves(client, sessions, admin_key):
    admin_id = user_row(sessions, "root@example.com").id
    response = client.patch(f"/v1/admin/users/{admin_id}", json={"is_active": False}, headers=auth(admin_key))
    assert response.status_code == 409 and response.json()["error"] == "conflict"
    assert user_row(sessions, "root@example.com").is_active is True
    assert client.get("/v1/admin/users", headers=auth(admin_key)).status_code == 200


def test_admin_routes_are_403_for_other_users(client, sessions):
    user_id, token = account(client, "ivy@example.com")
    _, pro_key = create_user(sessions, Tier.PRO)
    for credential in (token, pro_key):
        listed = client.get("/v1/admin/users", headers=auth(credential))
        assert listed.status_code == 403 and listed.json()["error"] == "forbidden"
        patch = client.patch(
            f"/v1/admin/users/{user_id}", json={"tier": "enterprise"}, headers=auth(credential)
        )
        assert patch.status_code == 403
    assert user_row(sessions, "ivy@example.com").tier == Tier.FREE
    assert client.get("/v1/admin/users").status_code == 401


# --- rate limits ---------------------------------------------------------------------------------


def assert_limited(response):
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "too_many_requests"
    assert 1 <= int(response.headers["retry-after"]) <= 60


def test_login_is_limited_per_email_and_per_ip(client, settings, redis):
    account(client, "jo@example.com")  # one login
    for _ in range(settings.login_limit_per_email - 1):
        assert login(client, "jo@example.com", "wrong password").status_code == 401
    assert_limited(login(client, "jo@example.com"))  # even the right password, once over the limit
    # The same address may still try other emails, up to its own limit (10 a minute).
    for i in range(settings.login_limit_per_ip - settings.login_limit_per_email - 1):
        assert login(client, f"other{i}@example.com").status_code == 401
    assert_limited(login(client, "someone@example.com"))
    # Another address is counted on its own, but the email's budget is shared across addresses.
    elsewhere = TestClient(client.app, client=("203.0.113.9", 4000))  # shares the running app
    assert login(elsewhere, "someone@example.com").status_code == 401
    assert_limited(login(elsewhere, "jo@example.com"))
    # Every counter expires with its window: nothing is left in Redis for ever.
    keys = list(redis.scan_iter(f"{KEY_PREFIX}:*"))
    assert keys and all(0 < redis.ttl(k) <= settings.rate_limit_window_seconds for k in keys)


def test_registration_is_limited_per_ip(client, sessions, settings):
    for i in range(settings.register_limit_per_ip):
        assert register(client, f"new{i}@example.com").status_code == 202
    assert_limited(register(client, "one.more@example.com"))
    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).select_from(User)) == settings.register_limit_per_ip


def test_the_limit_is_shared_by_several_api_processes(client, settings, redis):
    with TestClient(create_app(settings, redis)) as second:
        for i in range(settings.register_limit_per_ip):
            assert register(client if i % 2 else second, f"p{i}@example.com").status_code == 202
        assert_limited(register(second, "p.last@example.com"))
        assert_limited(register(client, "p.last@example.com"))


# --- docs ----------------------------------------------------------------------------------------


def test_openapi_declares_errors_and_both_auth_schemes(client):
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/v1/auth/login"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    expected = {
        ("post", "/v1/auth/register"): {"422", "429"},
        ("post", "/v1/auth/login"): {"401", "422", "429"},
        ("get", "/v1/auth/me"): {"401"},
        ("post", "/v1/auth/password"): {"401", "403", "422", "429"},
        ("post", "/v1/api-keys"): {"401", "422"},
        ("get", "/v1/api-keys"): {"401"},
        ("delete", "/v1/api-keys/{key_id}"): {"401", "404"},
        ("get", "/v1/admin/users"): {"401", "403"},
        ("patch", "/v1/admin/users/{user_id}"): {"401", "403", "404", "409", "422"},
    }
    for (method, path), codes in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert codes <= set(responses), (method, path)
        for code in codes:
            ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorOut"), (method, path, code)
