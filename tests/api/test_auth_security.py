"""Attacks on the credentials: forged and stale tokens, another user's credentials against every
route on someone else's resources, and secrets that must never be stored or logged in plaintext."""

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from core.db import session_scope
from core.logging import JsonFormatter, TextFormatter
from core.tokens import load_jwt_secret
from repositories.models import Base, User
from tests.api.auth_helpers import PASSWORD, account, login, make_key, submit_jfk, user_row
from tests.conftest import auth

OTHER_SECRET = "an entirely different secret of 48 characters!!!"


# --- forged and stale tokens ---------------------------------------------------------------------


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def _claims(sub: str, /, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": sub, "ver": 0, "iat": now, "exp": now + timedelta(minutes=5)}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], secret: str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _unsigned(claims: dict[str, Any]) -> str:
    payload = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


def _tampered(genuine: str, claims: dict[str, Any]) -> str:
    header, _, signature = genuine.split(".")
    payload = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    return f"{header}.{_b64(payload)}.{signature}"


_past = datetime.now(UTC) - timedelta(hours=2)
FORGERIES = {
    "alg_none": lambda s, a, b, g: _unsigned(_claims(a)),
    "alg_none_uppercase": lambda s, a, b, g: _unsigned(_claims(a)).replace(
        _b64({"alg": "none", "typ": "JWT"}), _b64({"alg": "NONE", "typ": "JWT"})
    ),
    "sub_changed_signature_kept": lambda s, a, b, g: _tampered(g, _claims(b)),
    "ver_changed_signature_kept": lambda s, a, b, g: _tampered(g, _claims(a, ver=7)),
    "expired": lambda s, a, b, g: _sign(_claims(a, iat=_past, exp=_past + timedelta(minutes=30)), s),
    "missing_exp": lambda s, a, b, g: _sign(_claims(a, exp=None), s),
    "missing_iat": lambda s, a, b, g: _sign(_claims(a, iat=None), s),
    "missing_sub": lambda s, a, b, g: _sign(_claims(a, sub=None), s),
    "missing_ver": lambda s, a, b, g: _sign(_claims(a, ver=None), s),
    "ver_as_text": lambda s, a, b, g: _sign(_claims(a, ver="0"), s),
    "other_secret": lambda s, a, b, g: _sign(_claims(a), OTHER_SECRET),
    "hs512_with_our_secret": lambda s, a, b, g: _sign(_claims(a), s, "HS512"),
    "unknown_user": lambda s, a, b, g: _sign(_claims("00000000-0000-0000-0000-000000000000"), s),
    "not_a_jwt": lambda s, a, b, g: "abc.def.ghi",
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_tokens_are_401(client, settings, forgery):
    alice_id, genuine = account(client, "alice@example.com")
    bob_id, _ = account(client, "bob@example.com")
    # Control: the genuine token works, and a forgery built the same way but signed right would too.
    assert client.get("/v1/auth/me", headers=auth(genuine)).json()["id"] == alice_id
    secret = load_jwt_secret(settings)
    assert client.get("/v1/auth/me", headers=auth(_sign(_claims(bob_id), secret))).json()["id"] == bob_id

    token = FORGERIES[forgery](secret, alice_id, bob_id, genuine)
    for method, path in (("get", "/v1/auth/me"), ("get", "/v1/jobs"), ("post", "/v1/api-keys")):
        response = client.request(method.upper(), path, headers=auth(token), json={"name": "x"})
        assert response.status_code == 401, (forgery, path, response.text)
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        assert "alice" not in response.text and "bob" not in response.text


def test_a_valid_token_of_a_deleted_user_is_401(client, sessions):
    _, token = account(client, "gone@example.com")
    assert client.get("/v1/auth/me", headers=auth(token)).status_code == 200
    with session_scope(sessions) as session:
        user = session.execute(select(User).where(User.email == "gone@example.com")).scalar_one()
        session.delete(user)
    response = client.get("/v1/auth/me", headers=auth(token))
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_an_issued_token_is_pinned_hs256_with_the_required_claims(client, settings):
    user_id, token = account(client, "hdr@example.com")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, load_jwt_secret(settings), algorithms=["HS256"])
    assert claims["sub"] == user_id and claims["ver"] == 0
    assert claims["exp"] - claims["iat"] == settings.access_token_minutes * 60


# --- another user's credentials against every route on someone else's resources -----------------

ROUTES = [
    ("get", "/v1/jobs/{job_id}"),
    ("get", "/v1/jobs/{job_id}/chunks"),
    ("get", "/v1/jobs/{job_id}/transcript"),
    ("post", "/v1/jobs/{job_id}/cancel"),
    ("post", "/v1/jobs/{job_id}/retry"),
    ("delete", "/v1/jobs/{job_id}"),
    ("delete", "/v1/api-keys/{key_id}"),
]


@pytest.fixture
def alice(client, run_worker) -> dict[str, str]:
    """A user with a completed job (chunks, transcript) and an API key."""
    user_id, token = account(client, "alice@example.com")
    key = make_key(client, token, "alice's laptop")
    submitted = submit_jfk(client, key["key"])
    assert submitted.status_code == 202, submitted.text
    run_worker()
    job_id = submitted.json()["id"]
    transcript = client.get(f"/v1/jobs/{job_id}/transcript", headers=auth(token))
    assert transcript.status_code == 200 and "country" in transcript.text.lower()
    return {
        "id": user_id,
        "email": "alice@example.com",
        "token": token,
        "key": key["key"],
        "key_id": key["id"],
        "key_prefix": key["prefix"],
        "job_id": job_id,
        "transcript": transcript.text.strip(),
    }


@pytest.mark.parametrize("kind", ["jwt", "api_key"])
@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_another_users_credentials_never_reach_a_resource(client, alice, settings, method, route, kind):
    _, bob_token = account(client, "bob@example.com")
    bob = bob_token if kind == "jwt" else make_key(client, bob_token)["key"]
    path = route.format(job_id=alice["job_id"], key_id=alice["key_id"])

    response = client.request(method.upper(), path, headers=auth(bob))

    assert response.status_code == 404, response.text
    assert "error" in response.json()
    text = response.text.lower()
    for private in ("alice", alice["id"], "jfk.flac", alice["key"], alice["key_prefix"], "country"):
        assert private.lower() not in text, private
    assert alice["transcript"].lower() not in text
    # Alice's job, files and key are exactly as they were.
    job = client.get(f"/v1/jobs/{alice['job_id']}", headers=auth(alice["token"]))
    assert job.status_code == 200 and job.json()["status"] == "completed"
    transcript = client.get(f"/v1/jobs/{alice['job_id']}/transcript", headers=auth(alice["token"]))
    assert transcript.text.strip() == alice["transcript"]
    assert (settings.storage_dir / "jobs" / alice["job_id"]).is_dir()
    keys = client.get("/v1/api-keys", headers=auth(alice["key"]))
    assert keys.status_code == 200 and [k["id"] for k in keys.json()] == [alice["key_id"]]


# --- no plaintext secret at rest or in the logs --------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.own: list[logging.LogRecord] = []
        self.caplog: pytest.LogCaptureFixture | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.own.append(record)

    @property
    def records(self) -> list[logging.LogRecord]:
        return self.own + (self.caplog.records if self.caplog else [])


@pytest.fixture
def all_logs(request) -> Iterator[_Collect]:
    """Every record at DEBUG and above: a handler on the root logger, plus caplog's records when
    pytest's logging plugin is loaded (`./scripts/test` may run with `-p no:logging`)."""
    root, handler = logging.getLogger(), _Collect()
    level = root.level
    if request.config.pluginmanager.has_plugin("logging"):
        request.getfixturevalue("caplog").set_level(logging.DEBUG)
        handler.caplog = request.getfixturevalue("caplog")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def _rendered(record: logging.LogRecord) -> str:
    # The fields ride on the record, not in the message: render it as every formatter would.
    return "\n".join((JsonFormatter().format(record), TextFormatter().format(record), repr(record.__dict__)))


def test_no_password_key_or_token_is_stored_or_logged(client, sessions, redis, all_logs):
    new_password = "a second secret, also long"
    mistyped = PASSWORD + " (mistyped)"
    _, first = account(client, "kim@example.com")
    second = login(client, "kim@example.com").json()["access_token"]
    keys = [make_key(client, first, name)["key"] for name in ("laptop", "ci")]
    for credential in (first, second, *keys):
        assert client.get("/v1/auth/me", headers=auth(credential)).status_code == 200
    assert login(client, "kim@example.com", mistyped).status_code == 401
    assert login(client, PASSWORD, "x").status_code == 401  # a password typed into the email field
    assert submit_jfk(client, keys[0]).status_code == 202
    changed = client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=auth(first),
    )
    assert changed.status_code == 204
    third = login(client, "kim@example.com", new_password).json()["access_token"]
    tokens = [first, second, third]
    secrets = [PASSWORD, new_password, mistyped, *keys, *tokens]
    secrets += [k.split("_", 2)[2] for k in keys] + [t.split(".")[2] for t in tokens]

    with session_scope(sessions) as session:
        stored = [
            str(value)
            for table in Base.metadata.sorted_tables
            for row in session.execute(select(table))
            for value in row
        ]
    assert user_row(sessions, "kim@example.com").password_hash in stored  # the dump did see the rows
    stored += [key.decode() for key in redis.scan_iter()]
    stored += [str(redis.get(key)) for key in redis.scan_iter() if redis.type(key) == b"string"]
    for secret in secrets:
        assert not any(secret in value for value in stored), "a secret is stored in plaintext"

    logged = [_rendered(r) for r in all_logs.records]
    events = {r.getMessage() for r in all_logs.records}
    assert {"user.registered", "auth.logged_in", "auth.login_failed", "api_key.created"} <= events
    assert {"auth.password_changed"} <= events
    for secret in secrets:
        assert not any(secret in line for line in logged), "a secret is in the logs"
