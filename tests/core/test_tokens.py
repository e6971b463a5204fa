"""The JWT secret: configured, or made once and shared through the data dir; refused when weak in
production. Token lifetime and rejection, without the API."""

import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from core.config import Settings
from core.errors import Unauthorized
from core.tokens import SECRET_FILE, TokenCodec, load_jwt_secret

STRONG = "s" * 32


def make_settings(tmp_path, **overrides):
    overrides.setdefault("jwt_secret", None)  # whatever the environment running the tests says
    return Settings(environment="test", data_dir=tmp_path / "data", database_url="sqlite://", **overrides)


def test_without_a_setting_a_secret_is_made_once_kept_private_and_shared(tmp_path):
    first = TokenCodec(make_settings(tmp_path))
    token = first.issue("user-1", 3).token
    path = tmp_path / "data" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) >= 32
    # Another API process, or this one after a restart, reads the same secret.
    later = TokenCodec(make_settings(tmp_path))
    claims = later.decode(token)
    assert (claims.user_id, claims.version) == ("user-1", 3)
    assert [p.name for p in path.parent.iterdir()] == [SECRET_FILE]


def test_processes_starting_together_agree_on_one_secret(tmp_path):
    settings = make_settings(tmp_path)
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def start() -> None:
        barrier.wait()
        seen.append(load_jwt_secret(settings))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and len(set(seen)) == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == [SECRET_FILE]


def test_a_configured_secret_is_used_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("VERBATIM_JWT_SECRET", STRONG)
    settings = Settings(environment="test", data_dir=tmp_path / "data", database_url="sqlite://")
    assert load_jwt_secret(settings) == STRONG
    assert not (tmp_path / "data" / SECRET_FILE).exists()
    assert STRONG not in repr(settings) and STRONG not in str(settings.model_dump())


@pytest.mark.parametrize("secret", [None, "", "x" * 31])
def test_production_refuses_to_start_without_a_strong_secret(tmp_path, monkeypatch, secret):
    monkeypatch.setenv("VERBATIM_ENVIRONMENT", "production")
    monkeypatch.delenv("VERBATIM_JWT_SECRET", raising=False)
    if secret is not None:
        monkeypatch.setenv("VERBATIM_JWT_SECRET", secret)
    with pytest.raises(ValidationError, match="VERBATIM_JWT_SECRET") as refused:
        Settings(data_dir=tmp_path, database_url="sqlite://")
    assert not secret or secret not in str(refused.value)  # a refused secret is not echoed


def test_production_starts_with_a_strong_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("VERBATIM_ENVIRONMENT", "production")
    monkeypatch.setenv("VERBATIM_JWT_SECRET", STRONG)
    settings = Settings(data_dir=tmp_path, database_url="sqlite://")
    assert TokenCodec(settings).decode(TokenCodec(settings).issue("u", 0).token).user_id == "u"
    assert not (tmp_path / SECRET_FILE).exists()


def test_tokens_live_as_long_as_the_setting_says(tmp_path):
    codec = TokenCodec(make_settings(tmp_path, access_token_minutes=5))
    issued = codec.issue("u", 0, now=datetime.now(UTC) - timedelta(minutes=4))
    assert issued.expires_in == 300
    assert codec.decode(issued.token).user_id == "u"
    stale = codec.issue("u", 0, now=datetime.now(UTC) - timedelta(minutes=6))
    with pytest.raises(Unauthorized):
        codec.decode(stale.token)


def test_a_token_from_another_deployment_is_refused(tmp_path):
    ours = TokenCodec(make_settings(tmp_path / "a"))
    theirs = TokenCodec(make_settings(tmp_path / "b"))
    with pytest.raises(Unauthorized):
        ours.decode(theirs.issue("u", 0).token)


def test_a_token_for_an_audience_and_a_bearer_token_cannot_stand_in_for_each_other(tmp_path):
    codec = TokenCodec(make_settings(tmp_path, jwt_secret=STRONG))
    session = codec.issue("user-1", 0, audience="verbatim:dashboard").token
    bearer = codec.issue("user-1", 0).token
    assert codec.decode(session, audience="verbatim:dashboard").user_id == "user-1"
    with pytest.raises(Unauthorized):
        codec.decode(session)
    with pytest.raises(Unauthorized):
        codec.decode(bearer, audience="verbatim:dashboard")
    with pytest.raises(Unauthorized):
        codec.decode(session, audience="another audience")
