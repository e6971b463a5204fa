"""`python -m scripts.make_admin EMAIL`: make a registered user an admin.

No API grants the admin flag (an admin's key could otherwise mint admins); an operator who reaches
the database does it here. The user keeps their password, so they can then sign in to the
dashboard at `/dashboard/login`. Admins get the `enterprise` tier, as the bootstrap admin has.
"""

import argparse
import sys

from core.config import Settings
from core.db import make_engine, make_session_factory, session_scope
from core.enums import Tier
from core.logging import get_logger
from repositories.users import UserRepository

log = get_logger(__name__)


def make_admin(settings: Settings, email: str) -> bool:
    """True if the user exists (and is now an admin), False if nobody has that email."""
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            users = UserRepository(session)
            user = users.get_by_email(email.strip())
            if user is None:
                return False
            users.update(user, is_admin=True, tier=Tier.ENTERPRISE)
            log.info("user.made_admin", user_id=user.id)
            return True
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    from core.config import get_settings

    parser = argparse.ArgumentParser(prog="python -m scripts.make_admin", description="Make a user an admin.")
    parser.add_argument("email", help="the email of a registered user")
    email = parser.parse_args(argv).email
    if not make_admin(get_settings(), email):
        print(f"no user with email {email}: register first (POST /v1/auth/register)", file=sys.stderr)
        return 1
    print(f"{email} is an admin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
