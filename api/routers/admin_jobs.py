from typing import Annotated

from fastapi import APIRouter, Query

from api import retention
from api.deps import AdminUser, StorageDep, UoW
from api.schemas import ErrorOut, PurgeOut
from core.config import MAX_RETENTION_DAYS
from storage.keys import job_prefix

router = APIRouter(prefix="/v1/admin/jobs", tags=["admin"])


@router.delete("", response_model=PurgeOut, responses={code: {"model": ErrorOut} for code in (401, 403, 422)})
def purge_jobs(
    _: AdminUser,
    uow: UoW,
    storage: StorageDep,
    older_than_days: Annotated[int, Query(ge=0, le=MAX_RETENTION_DAYS)],
) -> PurgeOut:
    """Delete every finished job older than `older_than_days`, with its stored files, now
    (the worker fleet does the same every hour with `VERBATIM_RETENTION_DAYS`)."""
    deleted = retention.purge_old_jobs(uow.session, older_than_days)
    uow.after_commit(lambda: [storage.delete_prefix(job_prefix(job_id)) for job_id in deleted])
    return PurgeOut(deleted=len(deleted))
