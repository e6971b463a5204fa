"""The webhook routes, and a real job whose webhook reaches an endpoint on loopback."""

import base64
import time

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from core.db import session_scope
from core.enums import Tier
from repositories.models import User, WebhookEvent, WebhookStatus
from tests.conftest import auth, create_user, speech
from tests.fakes.webhook_receiver import webhook_receiver
from worker.webhooks import Backoff, WebhookDeliveries


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"webhook_allow_private": True})


def test_the_secret_is_shown_once_and_each_call_rotates_it(client, sessions):
    user_id, key = create_user(sessions)
    assert client.get("/v1/webhooks", headers=auth(key)).json() == {"url": None, "has_secret": False}

    first = client.post("/v1/webhooks/secret", headers=auth(key))
    second = client.post("/v1/webhooks/secret", headers=auth(key))

    assert first.status_code == second.status_code == 201
    secrets = [r.json()["secret"] for r in (first, second)]
    assert all(s.startswith("whsec_") and len(base64.b64decode(s[6:])) == 32 for s in secrets)
    assert secrets[0] != secrets[1]
    shown = client.get("/v1/webhooks", headers=auth(key))
    assert shown.json() == {"url": None, "has_secret": True}
    assert "whsec_" not in client.get("/v1/auth/me", headers=auth(key)).text
    with session_scope(sessions) as session:
        assert session.get(User, user_id).webhook_secret == secrets[1]


def test_the_default_endpoint_is_checked_set_and_cleared(client, sessions):
    _, key = create_user(sessions)
    url = "http://127.0.0.1:9/hook"

    assert client.put("/v1/webhooks", headers=auth(key), json={"url": url}).json()["url"] == url
    assert client.get("/v1/webhooks", headers=auth(key)).json()["url"] == url
    for refused in ("ftp://example.com/hook", "http://user:pw@127.0.0.1/hook", "not a url"):
        response = client.put("/v1/webhooks", headers=auth(key), json={"url": refused})
        assert response.status_code == 422, refused
        assert response.json()["detail"].startswith("url refused: ")
    assert client.get("/v1/webhooks", headers=auth(key)).json()["url"] == url
    assert client.put("/v1/webhooks", headers=auth(key), json={"url": None}).json()["url"] is None
    assert client.put("/v1/webhooks", headers=auth(key), json={"uri": url}).status_code == 422
    assert client.put("/v1/webhooks", json={"url": url}).status_code == 401


def test_a_private_address_is_refused_unless_allowed(client, sessions, settings):
    _, key = create_user(sessions)
    client.app.state.settings = settings.model_copy(update={"webhook_allow_private": False})
    response = client.put("/v1/webhooks", headers=auth(key), json={"url": "https://127.0.0.1/hook"})
    assert response.status_code == 422
    assert "loopback" in response.json()["detail"]


def test_a_real_job_reaches_its_endpoint_on_the_third_try(client, sessions, settings, run_worker):
    """The receiver answers 500 twice: the third attempt delivers one signed `job.completed`."""
    _, key = create_user(sessions, Tier.PRO)
    _, other_key = create_user(sessions)
    secret = client.post("/v1/webhooks/secret", headers=auth(key)).json()["secret"]
    deliveries = WebhookDeliveries(sessions, settings, backoff=Backoff(base_seconds=0.05))
    audio = speech("jfk/jfk.flac")

    with webhook_receiver() as receiver:
        receiver.answer(500, 500)
        with audio.open("rb") as f:
            submitted = client.post(
                "/v1/jobs",
                headers=auth(key),
                files={"file": (audio.name, f)},
                data={"webhook_url": receiver.url},
            )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        run_worker()
        _deliver_until_settled(deliveries, sessions)

    requests = receiver.received()
    assert len(requests) == 3
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    payloads = [Webhook(secret).verify(r.body, r.headers) for r in requests]
    assert {p["type"] for p in payloads} == {"job.completed"}
    assert payloads[0]["job"]["id"] == job_id and payloads[0]["job"]["status"] == "completed"
    transcript = client.get(f"/v1/jobs/{job_id}/transcript", headers=auth(key)).text.strip()
    assert transcript and transcript.encode() not in requests[0].body

    listed = client.get(f"/v1/jobs/{job_id}/webhooks", headers=auth(key))
    assert listed.status_code == 200
    [event] = listed.json()
    assert event["id"] == requests[0].headers["webhook-id"]
    assert (event["type"], event["status"], event["url"]) == ("job.completed", "delivered", receiver.url)
    assert [(a["number"], a["status_code"]) for a in event["attempts"]] == [(1, 500), (2, 500), (3, 200)]
    assert event["delivered_at"] and event["next_attempt_at"] is None
    assert client.get(f"/v1/jobs/{job_id}/webhooks", headers=auth(other_key)).status_code == 404


def test_the_webhooks_of_an_unknown_job_are_404(client, sessions):
    _, key = create_user(sessions)
    assert client.get("/v1/jobs/no-such-job/webhooks", headers=auth(key)).status_code == 404


def _deliver_until_settled(deliveries, sessions, timeout=15.0):
    deadline = time.monotonic() + timeout
    while _pending(sessions):
        assert time.monotonic() < deadline, "webhook events still pending"
        if not deliveries.deliver_one():
            time.sleep(0.02)


def _pending(sessions):
    with session_scope(sessions) as session:
        stmt = select(WebhookEvent.id).where(WebhookEvent.status == WebhookStatus.PENDING)
        return session.execute(stmt).all()
