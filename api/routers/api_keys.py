from fastapi import APIRouter, Response

from api import accounts
from api.deps import CurrentUser, UoW
from api.fields import Text
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from api.schemas import error_responses as _errors
from repositories.users import ApiKeyRepository

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated, responses=_errors(401, 422))
def create_api_key(body: ApiKeyCreate, user: CurrentUser, uow: UoW, response: Response) -> ApiKeyCreated:
    """A new API key. The key itself is in this response only: the service keeps just a hash."""
    row, plaintext = accounts.create_api_key(uow.session, user, body.name)
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=plaintext)


@router.get("", response_model=list[ApiKeyOut], responses=_errors(401))
def list_api_keys(user: CurrentUser, uow: UoW) -> list[ApiKeyOut]:
    """Your keys that are not revoked, newest first (never the key itself)."""
    return [ApiKeyOut.model_validate(k) for k in ApiKeyRepository(uow.session).list_active(user.id)]


@router.delete("/{key_id}", status_code=204, responses=_errors(401, 404))
def revoke_api_key(key_id: Text, user: CurrentUser, uow: UoW) -> Response:
    """Revoke one of your keys: it stops working at once."""
    accounts.revoke_api_key(uow.session, user, key_id)
    return Response(status_code=204)
