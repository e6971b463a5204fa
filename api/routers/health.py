from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api import probes
from api.schemas import EngineOut, HealthOut, LiveOut, QueueHealthOut, ReadyOut
from core.queue_metrics import oldest_queued_seconds
from core.queues import QueueManager
from repositories.jobs import JobRepository

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=LiveOut)
def live() -> LiveOut:
    """No authentication. `200` whenever the process answers: it touches no dependency, so an
    outage of the database or Redis never gets healthy API processes restarted."""
    return LiveOut(status="alive")


@router.get("/health/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def ready(request: Request) -> JSONResponse:
    """No authentication. `200` when the database, Redis and storage all answer; otherwise `503`,
    and this process should get no traffic until they do."""
    state = request.app.state
    checks = probes.readiness(state.sessions, state.queues.redis, state.storage)
    body = ReadyOut(status="ready" if checks.ready else "not_ready", **checks.as_words())
    return JSONResponse(body.model_dump(), status_code=200 if checks.ready else 503)


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(request: Request) -> JSONResponse:
    """No authentication. Readiness plus the first figures an operator looks at: jobs in SQL,
    workers, and per queue the tasks waiting and running and how long the oldest has waited.
    `503` when the database, Redis or storage cannot be reached."""
    jobs_count = _jobs_count(request)
    queues = _queues(request.app.state.queues)
    storage = probes.storage_up(request.app.state.storage)
    healthy = jobs_count is not None and queues is not None and storage
    body = HealthOut(
        status="ok" if healthy else "degraded",
        database="ok" if jobs_count is not None else "unavailable",
        redis="ok" if queues is not None else "unavailable",
        storage="ok" if storage else "unavailable",
        workers=queues[0] if queues is not None else None,
        jobs_count=jobs_count,
        queues=queues[1] if queues is not None else [],
        engines=_engines(request.app.state.queues) if queues is not None else [],
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


def _jobs_count(request: Request) -> int | None:
    try:
        with request.app.state.sessions() as session:
            session.execute(text("SELECT 1"))
            return JobRepository(session).estimated_count()
    except SQLAlchemyError:
        return None


def _engines(queues: QueueManager) -> list[EngineOut]:
    try:
        return [
            EngineOut.model_validate({"worker": name, **info})
            for name, info in sorted(queues.engines().items())
        ]
    except RedisError:
        return []


def _queues(queues: QueueManager) -> tuple[int, list[QueueHealthOut]] | None:
    """(workers, per queue figures), or None when Redis is down."""
    try:
        ages = oldest_queued_seconds(queues)
        per_queue = [
            QueueHealthOut(
                name=s.name,
                queued=s.queued,
                started=s.started,
                workers=s.workers,
                oldest_queued_seconds=ages[s.name],
            )
            for s in queues.stats()
        ]
        return queues.worker_count(), per_queue
    except RedisError:
        return None
