from sqlalchemy import select

from core.enums import Tier
from core.security import NewApiKey, hash_api_key
from repositories.base import Repository
from repositories.models import ApiKey, User


class UserRepository(Repository[User]):
    model = User

    def get_by_email(self, email: str) -> User | None:
        return self.get_one_or_none(select(User).where(User.email == email.lower()))

    def create_user(self, email: str, tier: Tier, *, is_admin: bool = False) -> User:
        return self.create(email=email.lower(), tier=tier, is_admin=is_admin)


class ApiKeyRepository(Repository[ApiKey]):
    model = ApiKey

    def user_for_key(self, plaintext: str) -> User | None:
        stmt = (
            select(User)
            .join(ApiKey, ApiKey.user_id == User.id)
            .where(ApiKey.key_hash == hash_api_key(plaintext), ApiKey.revoked_at.is_(None))
        )
        return self.session.execute(stmt).scalar_one_or_none()

    def add_key(self, user: User, key: NewApiKey) -> ApiKey:
        return self.create(user_id=user.id, prefix=key.prefix, key_hash=key.digest)
