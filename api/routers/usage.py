from fastapi import APIRouter

from api import quota
from api.deps import CurrentUser, UoW
from api.schemas import ErrorOut, UsageOut

router = APIRouter(prefix="/v1/usage", tags=["account"])


@router.get("", response_model=UsageOut, responses={401: {"model": ErrorOut}})
def get_usage(user: CurrentUser, uow: UoW) -> UsageOut:
    """This month's audio minutes used and left, active jobs, and your tier's limits."""
    return UsageOut.of(quota.usage(uow.session, user), user.tier)
