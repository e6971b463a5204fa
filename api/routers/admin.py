from fastapi import APIRouter

from api.deps import AdminUser, UoW
from api.schemas import ErrorOut, UserCreate, UserCreated
from core.errors import Conflict
from core.security import new_api_key
from repositories.users import ApiKeyRepository, UserRepository

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/users",
    status_code=201,
    response_model=UserCreated,
    responses={code: {"model": ErrorOut} for code in (401, 403, 409, 422)},
)
def create_user(body: UserCreate, _: AdminUser, uow: UoW) -> UserCreated:
    """Create a user of a tier with a first API key, which is shown only in this response."""
    users = UserRepository(uow.session)
    if users.get_by_email(body.email) is not None:
        raise Conflict(f"a user with email {body.email} exists")
    user = users.create_user(body.email, body.tier)
    key = new_api_key()
    ApiKeyRepository(uow.session).add_key(user, key)
    return UserCreated(id=user.id, email=user.email, tier=user.tier, api_key=key.plaintext)
