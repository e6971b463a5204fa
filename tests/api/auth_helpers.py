"""Plain functions for the account tests: register, log in, make an API key, read rows."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from repositories.models import ApiKey, User
from tests.conftest import auth, speech

PASSWORD = "correct horse battery staple"


def register(client: Any, email: str, password: str = PASSWORD) -> Any:
    return client.post("/v1/auth/register", json={"email": email, "password": password})


def login(client: Any, email: str, password: str = PASSWORD) -> Any:
    return client.post("/v1/auth/login", data={"username": email, "password": password})


def account(client: Any, email: str, password: str = PASSWORD) -> tuple[str, str]:
    """Register and log in. Returns (user id, access token)."""
    created = register(client, email, password)
    assert created.status_code == 202, created.text
    response = login(client, email, password)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    me = client.get("/v1/auth/me", headers=auth(token))
    assert me.status_code == 200, me.text
    return me.json()["id"], token


def make_key(client: Any, credential: str, name: str = "laptop") -> dict[str, Any]:
    response = client.post("/v1/api-keys", json={"name": name}, headers=auth(credential))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def submit_jfk(client: Any, credential: str) -> Any:
    return client.post(
        "/v1/jobs",
        headers=auth(credential),
        files={"file": ("jfk.flac", speech("jfk/jfk.flac").read_bytes())},
    )


def user_row(sessions: sessionmaker[Session], email: str) -> User:
    with session_scope(sessions) as session:
        user = session.execute(select(User).where(User.email == email)).scalar_one()
        session.expunge(user)
        return user


def key_row(sessions: sessionmaker[Session], key_id: str) -> ApiKey:
    with session_scope(sessions) as session:
        key = session.get(ApiKey, key_id)
        assert key is not None
        session.expunge(key)
        return key
