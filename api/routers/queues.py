from fastapi import APIRouter

from api.deps import CurrentUser, QueuesDep
from api.schemas import ErrorOut, QueueOut

router = APIRouter(prefix="/v1/queues", tags=["operations"])


@router.get("", response_model=list[QueueOut], responses={401: {"model": ErrorOut}, 503: {"model": ErrorOut}})
def list_queues(_: CurrentUser, queues: QueuesDep) -> list[QueueOut]:
    """Each priority queue, highest first: jobs waiting, running, failed, and workers serving it."""
    return [QueueOut(**vars(s)) for s in queues.stats()]
