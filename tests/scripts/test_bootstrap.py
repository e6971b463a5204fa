"""The admin key `./scripts/run` prints works, survives restarts, and honours the operator's key."""

from core.db import session_scope
from repositories.users import ApiKeyRepository
from scripts.bootstrap import ensure_admin_key


def admin_for(sessions, key):
    with session_scope(sessions) as session:
        user = ApiKeyRepository(session).user_for_key(key)
        return None if user is None else (user.email, user.tier.value, user.is_admin)


def test_first_start_makes_a_key_and_later_starts_reuse_it(settings, sessions):
    first = ensure_admin_key(settings)
    assert first.startswith("vbt_")
    assert ensure_admin_key(settings) == first
    assert admin_for(sessions, first) == ("admin@localhost", "enterprise", True)
    key_file = settings.data_dir / "admin_api_key"
    assert key_file.stat().st_mode & 0o077 == 0


def test_the_bootstrap_key_is_exactly_the_configured_value(settings, sessions):
    wanted = "operator-chosen-key-0123456789"
    configured = settings.model_copy(update={"bootstrap_api_key": wanted})
    assert ensure_admin_key(configured) == wanted
    assert ensure_admin_key(configured) == wanted
    assert admin_for(sessions, wanted) == ("admin@localhost", "enterprise", True)
    assert not (settings.data_dir / "admin_api_key").exists()
