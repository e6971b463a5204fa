from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import probes
from api.deps import HealthDep, QueuesDep, SessionsDep, StorageDep
from api.schemas import HealthOut, LiveOut, ReadyOut

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=LiveOut)
def live() -> LiveOut:
    """No authentication. `200` whenever the process answers: it touches no dependency, so an
    outage of the database or Redis never gets healthy API processes restarted."""
    return LiveOut(status="alive")


@router.get("/health/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def ready(sessions: SessionsDep, queues: QueuesDep, storage: StorageDep) -> JSONResponse:
    """No authentication. `200` when the database, Redis and storage all answer; otherwise `503`,
    and this process should get no traffic until they do. Checked afresh on every call, unlike
    `/health`: a balancer must see an outage at its next probe, and a probe that hangs on a store
    must hang (and time out) rather than answer "ready" from before. Three cheap round trips."""
    checks = probes.readiness(sessions, queues.redis, storage)
    body = ReadyOut(status="ready" if checks.ready else "not_ready", **checks.as_words())
    return JSONResponse(body.model_dump(), status_code=200 if checks.ready else 503)


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(snapshot: HealthDep) -> JSONResponse:
    """No authentication. Readiness plus the first figures an operator looks at: jobs in SQL,
    workers, and per queue the tasks waiting and running and how long the oldest has waited.
    `503` when the database, Redis or storage cannot be reached. The figures are read at most once
    a second per API process (`checked_at` says when), so calling it costs the stores nothing more."""
    body = snapshot.get()
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.status == "ok" else 503)
