"""Webhook delivery: sign as Standard Webhooks do, send once, and decide what comes next.

Each worker process runs `WebhookSenders`: `VERBATIM_WEBHOOK_SENDERS` delivery loops, each on its
own thread (an HTTP attempt may take the whole `VERBATIM_WEBHOOK_TIMEOUT_SECONDS`, which must not
stall the fleet duties' heartbeat). A loop leases one due event at a time from the outbox
(`repositories.webhooks`), sends it outside any transaction, then records the attempt under the
same lease:

- `2xx`: delivered.
- `410 Gone`: the endpoint is disabled: this event and the user's other pending events to that URL
  stop, and if it is the user's default endpoint, the default is cleared.
- anything else (a redirect, which is never followed; another `4xx`; a `5xx`; a timeout; an address
  the guard refuses): tried again after an exponential backoff with full jitter, until the event is
  `VERBATIM_WEBHOOK_RETRY_HOURS` old; then it is failed.

An attempt ends by its deadline, however slowly the endpoint sends (a byte a second, or `100
Continue` after `100 Continue`): the connection is closed then and the attempt counted as a timeout.
Its lease outlasts that deadline, so no other sender takes the event meanwhile. And a user has at
most one attempt in flight, fleet-wide (the outbox hands out no event of a user whose attempt is
under way): however many events a slow endpoint is owed, it holds one loop, and the others keep
delivering to everyone else.

Delivery is at least once: a sender that dies mid-attempt leaves its lease to expire and another
sender tries again with the same `webhook-id`, which receivers use to drop duplicates.
"""

import base64
import hashlib
import hmac
import json
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.db import session_scope
from core.logging import get_logger
from core.netguard import UnsafeUrl, guarded_client
from repositories.models import WebhookAttempt, WebhookStatus, utcnow
from repositories.webhooks import SECRET_PREFIX, Claim, WebhookRepository

log = get_logger(__name__)

USER_AGENT = "Verbatim-Webhooks/1"
IDLE_SECONDS = 1.0
# A lease outlasts its attempt's deadline by this much: name resolution (which the deadline does not
# bound) and recording the attempt.
LEASE_MARGIN_SECONDS = 30.0
EVENT_NAMES = {
    WebhookStatus.DELIVERED: "webhook.delivered",
    WebhookStatus.PENDING: "webhook.retrying",
    WebhookStatus.FAILED: "webhook.failed",
    WebhookStatus.DISABLED: "webhook.endpoint_disabled",
}


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed with the secret's decoded bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def render(payload: dict[str, Any], base_url: str) -> bytes:
    """The body sent: the stored payload plus links to the job on this service."""
    job_url = f"{base_url}/v1/jobs/{payload['job']['id']}"
    links = {"job": job_url, "transcript": f"{job_url}/transcript"}
    return json.dumps({**payload, "links": links}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Outcome:
    """One attempt: the endpoint's status code, or why there was none."""

    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def send(claim: Claim, body: bytes, *, allow_private: bool, timeout: float) -> Outcome:
    """One signed POST, over within `timeout` seconds however slowly the endpoint answers.

    Never raises for what the endpoint does; redirects are not followed.
    """
    started_at, clock = utcnow(), time.monotonic()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claim.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(claim.secret, claim.event_id, timestamp, body),
    }
    status_code, error = None, None
    try:
        # The client checks the URL and every address it dials: refusals raise UnsafeUrl.
        with (
            guarded_client(allow_private=allow_private, timeout=timeout, deadline=clock + timeout) as client,
            # Streamed and closed unread: only the status matters, and a huge body costs nothing.
            client.stream("POST", claim.url, content=body, headers=headers) as response,
        ):
            status_code = response.status_code
            if response.is_redirect:
                error = "redirect not followed"
    except UnsafeUrl as exc:
        error = f"refused: {exc}"
    except httpx.TimeoutException:
        error = f"no answer within {timeout:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        # Recorded like any failed attempt, so that a bug ends the event on schedule instead of
        # leaving it leased and retried forever without a trace.
        log.exception("webhook.send_crashed", event_id=claim.event_id)
        error = f"{type(exc).__name__}: {exc}"
    duration_ms = round((time.monotonic() - clock) * 1000)
    return Outcome(started_at, duration_ms, status_code, error[:500] if error else None)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniformly in [0, min(cap, base * 2^(n-1)))."""

    base_seconds: float = 5.0
    cap_seconds: float = 3600.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** min(attempt - 1, 32))
        return random.uniform(0, ceiling)


class WebhookDeliveries(threading.Thread):
    """One delivery loop of a worker process (see the module docstring and `WebhookSenders`)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        backoff: Backoff | None = None,
        idle_seconds: float = IDLE_SECONDS,
        name: str = "webhook-deliveries",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._sessions, self._settings = sessions, settings
        self._backoff = backoff or Backoff()
        self._idle = idle_seconds
        self._stopping = threading.Event()
        self._drain = False

    def run(self) -> None:
        while True:
            busy = self._step()
            if self._stopping.is_set() and not (self._drain and busy):
                return
            if not busy:
                self._stopping.wait(self._idle)

    def stop(self, *, drain: bool = False) -> None:
        """Stop after the attempt in flight; with `drain`, after every event already due is sent."""
        self.request_stop(drain=drain)
        self.join(timeout=None if drain else self._settings.webhook_timeout_seconds + 5)

    def request_stop(self, *, drain: bool = False) -> None:
        """`stop` without waiting for the loop to end."""
        self._drain = drain
        self._stopping.set()

    def _step(self) -> bool:
        try:
            return self.deliver_one()
        except SQLAlchemyError as exc:
            # The database is away: keep trying, never die.
            log.warning("webhook.loop_failed", error=str(exc))
        except Exception as exc:
            log.exception("webhook.loop_failed", error=str(exc))
        return False

    def deliver_one(self) -> bool:
        """Lease one due event, make one attempt and record it. False if no event was due."""
        now = utcnow()
        lease = now + timedelta(seconds=self._lease_seconds())
        with session_scope(self._sessions) as session:
            claim = WebhookRepository(session).claim_next(now, lease)
        if claim is None:
            return False
        body = render(claim.payload, self._settings.base_url)
        outcome = send(
            claim,
            body,
            allow_private=self._settings.webhook_allow_private,
            timeout=self._settings.webhook_timeout_seconds,
        )
        self._record(claim, outcome)
        return True

    def _lease_seconds(self) -> float:
        return self._settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS

    def _record(self, claim: Claim, outcome: Outcome) -> None:
        status, next_at = self._next(claim, outcome)
        attempt = WebhookAttempt(
            event_id=claim.event_id,
            number=claim.attempt,
            started_at=outcome.started_at,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
        with session_scope(self._sessions) as session:
            events = WebhookRepository(session)
            if not events.settle(claim, attempt, status, next_at):
                log.warning("webhook.lease_lost", event_id=claim.event_id, attempt=claim.attempt)
                return
            if status == WebhookStatus.DISABLED:
                events.disable_endpoint(claim.user_id, claim.url)
        log.info(
            EVENT_NAMES[status],
            event_id=claim.event_id,
            attempt=claim.attempt,
            status_code=outcome.status_code,
            error=outcome.error,
            next_attempt_at=next_at.isoformat() if next_at else None,
        )

    def _next(self, claim: Claim, outcome: Outcome) -> tuple[WebhookStatus, datetime | None]:
        if outcome.delivered:
            return WebhookStatus.DELIVERED, None
        if outcome.gone:
            return WebhookStatus.DISABLED, None
        deadline = claim.created_at + timedelta(hours=self._settings.webhook_retry_hours)
        now = utcnow()
        if now >= deadline:
            return WebhookStatus.FAILED, None
        retry_at = now + timedelta(seconds=self._backoff.delay(claim.attempt))
        # The last try lands on the deadline rather than past it.
        return WebhookStatus.PENDING, min(retry_at, deadline)


class WebhookSenders:
    """The delivery loops of one worker process: `VERBATIM_WEBHOOK_SENDERS` `WebhookDeliveries`."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._settings = settings
        self._loops = [
            WebhookDeliveries(sessions, settings, name=f"webhook-sender-{n}")
            for n in range(settings.webhook_senders)
        ]

    def start(self) -> None:
        for loop in self._loops:
            loop.start()

    def stop(self, *, drain: bool = False) -> None:
        """Stop every loop after its attempt in flight; with `drain`, once no event is due any more."""
        for loop in self._loops:
            loop.request_stop(drain=drain)
        # The attempts in flight end together, by their deadline: one wait covers them all.
        ends_by = time.monotonic() + self._settings.webhook_timeout_seconds + 5
        for loop in self._loops:
            loop.join(timeout=None if drain else max(0.0, ends_by - time.monotonic()))
