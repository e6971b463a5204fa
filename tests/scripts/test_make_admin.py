"""An operator makes a registered user an admin, who can then sign in to the dashboard."""

from core.db import session_scope
from core.enums import Tier
from repositories.users import UserRepository
from scripts.make_admin import make_admin
from tests.conftest import create_user


def role(sessions, email):
    with session_scope(sessions) as session:
        user = UserRepository(session).get_by_email(email)
        return user.is_admin, user.tier


def test_a_registered_user_becomes_an_enterprise_admin(settings, sessions):
    create_user(sessions, Tier.FREE, email="ops@example.com")
    assert role(sessions, "ops@example.com") == (False, Tier.FREE)
    assert make_admin(settings, " Ops@Example.com ")
    assert role(sessions, "ops@example.com") == (True, Tier.ENTERPRISE)


def test_an_unknown_email_changes_nothing(settings, sessions):
    create_user(sessions, Tier.FREE, email="ops@example.com")
    assert not make_admin(settings, "nobody@example.com")
    assert role(sessions, "ops@example.com") == (False, Tier.FREE)
