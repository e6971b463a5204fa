"""Make sure an admin user with a usable API key exists, and say what the key is.

With `VERBATIM_BOOTSTRAP_API_KEY` the admin's key is exactly that value. Otherwise a key is made on
first start and kept in `<data dir>/admin_api_key` (mode 0600), so that later starts can print it
again: the database only holds its hash.
"""

from pathlib import Path

from sqlalchemy.orm import Session

from core.config import Settings
from core.db import make_engine, make_session_factory, session_scope
from core.enums import Tier
from core.files import PRIVATE_FILE, private_dir
from core.security import new_api_key
from repositories.models import User
from repositories.users import ApiKeyRepository, UserRepository

ADMIN_EMAIL = "admin@localhost"


def ensure_admin_key(settings: Settings) -> str:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            admin = _admin(session)
            wanted = settings.bootstrap_api_key or _saved_key(settings.data_dir)
            keys = ApiKeyRepository(session)
            if wanted is not None and keys.user_for_key(wanted) is not None:
                return wanted
            key = new_api_key(wanted)
            keys.add_key(admin, key)
            if settings.bootstrap_api_key is None:
                _save_key(settings.data_dir, key.plaintext)
            return key.plaintext
    finally:
        engine.dispose()


def _admin(session: Session) -> User:
    users = UserRepository(session)
    return users.get_by_email(ADMIN_EMAIL) or users.create_user(ADMIN_EMAIL, Tier.ENTERPRISE, is_admin=True)


def admin_key_file(data_dir: Path) -> Path:
    return data_dir / "admin_api_key"


def _saved_key(data_dir: Path) -> str | None:
    path = admin_key_file(data_dir)
    return path.read_text().strip() if path.is_file() else None


def _save_key(data_dir: Path, key: str) -> None:
    path = admin_key_file(data_dir)
    private_dir(path.parent)
    path.touch(mode=PRIVATE_FILE)
    path.write_text(key + "\n")


def main() -> None:
    """`python -m scripts.bootstrap`: print the admin API key (creating the admin if needed)."""
    from core.config import get_settings

    print(ensure_admin_key(get_settings()))


if __name__ == "__main__":
    main()
