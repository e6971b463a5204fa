from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder

from api.deps import MetricsDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}}})
def metrics(request: Request, registry: MetricsDep) -> Response:
    """Prometheus text format, computed from SQL and Redis at each scrape (see `api/metrics.py`).

    No authentication, so that operators can scrape it; it carries no user data: no e-mail,
    filename or id, only counts and durations by queue, priority and status.
    """
    # The scraper's Accept header picks the format (Prometheus text, or OpenMetrics if asked).
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry), headers={"Content-Type": content_type})
