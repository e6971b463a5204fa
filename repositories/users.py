from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.enums import Tier
from core.security import NewApiKey, hash_api_key
from repositories.base import Repository
from repositories.models import ApiKey, User


class UserRepository(Repository[User]):
    model = User

    def get_by_email(self, email: str) -> User | None:
        return self.get_one_or_none(select(User).where(User.email == email.lower()))

    def create_user(
        self, email: str, tier: Tier, *, is_admin: bool = False, password_hash: str | None = None
    ) -> User:
        return self.create(email=email.lower(), tier=tier, is_admin=is_admin, password_hash=password_hash)

    def create_unless_taken(self, email: str, tier: Tier, *, password_hash: str) -> str | None:
        """Add a user unless one has this email. The new user's id, or None if the email was taken.

        ON CONFLICT DO NOTHING: of two concurrent registrations of one email exactly one inserts,
        and the other finds the email taken without an error that would end the transaction."""
        dialect = self.session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        stmt = (
            insert(User)
            .values(email=email.lower(), tier=tier, is_admin=False, password_hash=password_hash)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(User.id)
        )
        return self.session.execute(stmt).scalar_one_or_none()

    def list_page(self, limit: int, offset: int) -> tuple[Sequence[User], int]:
        return self.paginate(select(User).order_by(User.created_at.desc(), User.id), limit, offset)

    def lock(self, user_id: str) -> None:
        """Hold the user's row until the transaction ends, so that the checks of one user's limits
        take turns (two submissions cannot both see the last free slot).

        A write that changes nothing, not `SELECT ... FOR UPDATE`: SQLite has no row locks and its
        driver begins a transaction only at the first write, so a write is what makes the reads
        after it part of one locked transaction there; on PostgreSQL it locks just this row."""
        self.session.execute(update(User).where(User.id == user_id).values(is_active=User.is_active))

    def set_password(self, user: User, password_hash: str) -> User:
        # Incremented in SQL, not in Python: two concurrent changes still give two versions.
        return self.update(user, password_hash=password_hash, token_version=User.token_version + 1)


class ApiKeyRepository(Repository[ApiKey]):
    model = ApiKey

    def user_for_key(self, plaintext: str) -> User | None:
        found = self.key_and_user(plaintext)
        return found[1] if found else None

    def key_and_user(self, plaintext: str) -> tuple[ApiKey, User] | None:
        """The unrevoked key with this plaintext and its owner, found by digest."""
        stmt = (
            select(ApiKey, User)
            .join(User, ApiKey.user_id == User.id)
            .where(ApiKey.key_hash == hash_api_key(plaintext), ApiKey.revoked_at.is_(None))
        )
        row = self.session.execute(stmt).one_or_none()
        return (row[0], row[1]) if row else None

    def add_key(self, user: User, key: NewApiKey, name: str | None = None) -> ApiKey:
        return self.create(user_id=user.id, name=name, prefix=key.prefix, key_hash=key.digest)

    def list_active(self, user_id: str) -> Sequence[ApiKey]:
        stmt = (
            select(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.created_at.desc(), ApiKey.id)
        )
        return self.session.execute(stmt).scalars().all()

    def get_active_for_user(self, key_id: str, user_id: str) -> ApiKey | None:
        return self.get_one_or_none(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        )

    def revoke(self, key: ApiKey, now: datetime) -> ApiKey:
        return self.update(key, revoked_at=now)

    def touch(self, key_id: str, now: datetime, stale_before: datetime) -> None:
        """Record a use, unless one was recorded since `stale_before` (writes stay rare)."""
        self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale_before),
            )
            .values(last_used_at=now)
        )
