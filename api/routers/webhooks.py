"""Webhooks: your signing secret, your default endpoint, and each job's deliveries.

When a job completes or fails, an event is sent to the job's `webhook_url`, or else to your default
endpoint. Every event is signed as Standard Webhooks do it (`webhook-id`, `webhook-timestamp`,
`webhook-signature`) with your secret. If you never asked for a secret, one is made when your first
event is sent, and you cannot see it: `POST /v1/webhooks/secret` replaces it with one you are shown
(once), and every attempt from then on, retries of older events included, is signed with the new one.
"""

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentUser, SettingsDep, UoW
from api.fields import Text
from api.schemas import (
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEventOut,
    WebhookSecretOut,
    error_responses,
)
from api.submission import checked_url
from core.errors import NotFound
from repositories.jobs import JobRepository
from repositories.webhooks import WebhookRepository, WebhookSettings

router = APIRouter(tags=["webhooks"])

_errors: dict[int | str, dict[str, Any]] = error_responses(401, 503)


@router.post("/v1/webhooks/secret", status_code=201, response_model=WebhookSecretOut, responses=_errors)
def rotate_secret(user: CurrentUser, uow: UoW) -> WebhookSecretOut:
    """A new signing secret, shown this once; the previous one stops being used at once."""
    return WebhookSecretOut(secret=WebhookSettings(uow.session).rotate_secret(user))


@router.get("/v1/webhooks", response_model=WebhookEndpointOut, responses=_errors)
def get_endpoint(user: CurrentUser) -> WebhookEndpointOut:
    return WebhookEndpointOut.of(user)


@router.put("/v1/webhooks", response_model=WebhookEndpointOut, responses={**_errors, **error_responses(422)})
def set_endpoint(
    body: WebhookEndpointIn, user: CurrentUser, uow: UoW, settings: SettingsDep
) -> WebhookEndpointOut:
    """Set (or, with `null`, clear) the endpoint for jobs submitted without a `webhook_url`.
    `422` if the URL is not one the service may call. An endpoint answering `410 Gone` is cleared."""
    WebhookSettings(uow.session).set_default_url(user, checked_url("url", body.url, settings))
    return WebhookEndpointOut.of(user)


@router.get(
    "/v1/jobs/{job_id}/webhooks",
    response_model=list[WebhookEventOut],
    responses={**_errors, **error_responses(404)},
)
def list_job_webhooks(job_id: Text, user: CurrentUser, uow: UoW) -> list[WebhookEventOut]:
    """The job's webhook events, each with every delivery attempt made so far."""
    if JobRepository(uow.session).get_for_owner(job_id, user.id) is None:
        raise NotFound(f"no job {job_id}")
    return [WebhookEventOut.of(e) for e in WebhookRepository(uow.session).list_for_job(job_id)]
