from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.schemas import HealthOut
from core.queues import QueueManager
from repositories.jobs import JobRepository

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(request: Request) -> JSONResponse:
    """No authentication. `503` when the database or Redis cannot be reached."""
    jobs_count = _jobs_count(request)
    workers = _workers(request.app.state.queues)
    healthy = jobs_count is not None and workers is not None
    body = HealthOut(
        status="ok" if healthy else "degraded",
        database="ok" if jobs_count is not None else "unavailable",
        redis="ok" if workers is not None else "unavailable",
        workers=workers,
        jobs_count=jobs_count,
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


def _jobs_count(request: Request) -> int | None:
    try:
        with request.app.state.sessions() as session:
            session.execute(text("SELECT 1"))
            return JobRepository(session).count()
    except SQLAlchemyError:
        return None


def _workers(queues: QueueManager) -> int | None:
    try:
        return queues.worker_count()
    except RedisError:
        return None
