from typing import Annotated

from fastapi import APIRouter, Query

from api import accounts
from api.deps import AdminUser, UoW
from api.fields import Offset, Text
from api.schemas import (
    AdminUserOut,
    ErrorOut,
    UserCreate,
    UserCreated,
    UserList,
    UserPatch,
    error_responses,
)
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


@router.get("/users", response_model=UserList, responses=error_responses(401, 403, 422))
def list_users(
    _: AdminUser,
    uow: UoW,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Offset = 0,
) -> UserList:
    """Every user, newest first."""
    items, total = UserRepository(uow.session).list_page(limit, offset)
    return UserList(items=[AdminUserOut.of(u) for u in items], total=total, limit=limit, offset=offset)


@router.patch(
    "/users/{user_id}",
    response_model=AdminUserOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def update_user(user_id: Text, body: UserPatch, admin: AdminUser, uow: UoW) -> AdminUserOut:
    """Set a user's tier, or disable (`is_active: false`) and enable them. A disabled user's tokens
    and API keys are refused until they are enabled again; an admin cannot disable themselves."""
    user = accounts.update_user(uow.session, admin, user_id, body.tier, body.is_active)
    return AdminUserOut.of(user)
