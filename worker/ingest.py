"""URL ingestion: `prepare` downloads a job submitted by URL into storage, then decodes it as usual.

The download goes through the SSRF guard (`core.netguard`): each redirect hop is checked, and each
connection dials an address checked at that moment. The size limit is the smaller of the server's
and the owner's tier's upload limit; it is enforced on the declared length and again on the bytes
received, so a server that sends no length (or lies about it) is cut off at the limit. The whole
download, from the first connection to the last byte and through every redirect, ends by
`VERBATIM_FETCH_TIMEOUT_SECONDS`: a server that never finishes its headers, or trickles its body,
is cut off there too. Storage writes are all-or-nothing, so a refused or broken download leaves
nothing behind.
"""

import time

import httpx

from core.config import Settings
from core.db import session_scope
from core.enums import Tier
from core.logging import get_logger
from core.netguard import MAX_REDIRECTS, UnsafeUrl, guarded_client, stream_following_redirects
from core.tiers import policy_for
from repositories.jobs import JobRepository
from storage.base import Storage
from worker.context import WorkerContext

log = get_logger(__name__)

MIB = 1024 * 1024
# An origin silent this long is treated as gone, even while the overall deadline is further off.
IDLE_TIMEOUT_SECONDS = 60.0
# Statuses that say "later" rather than "never".
RETRYABLE_STATUSES = frozenset({408, 425, 429})


class DownloadError(Exception):
    """The audio could not be downloaded; the message is written for the job's owner."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"could not download {_shown(url)}: {reason}")


class PermanentDownloadError(DownloadError):
    """Retrying would fail the same way (refused URL, 404, too large): the job fails at once."""


class TransientDownloadError(DownloadError):
    """The origin may answer later (unreachable, 5xx, timeout): RQ retries the stage."""


def fetch_source(ctx: WorkerContext, job_id: str, url: str, key: str, tier: Tier) -> None:
    """Download `url` into `key` unless an earlier run did, and record its size on the job."""
    try:
        size = ctx.storage.size(key)  # an earlier run downloaded it, then stopped before planning
    except FileNotFoundError:
        limit = min(ctx.settings.max_upload_bytes, policy_for(tier).max_upload_mb * MIB)
        started = time.monotonic()
        size = _download(ctx.settings, ctx.storage, url, key, limit)
        log.info("source.downloaded", job_id=job_id, bytes=size, seconds=round(time.monotonic() - started, 3))
    with session_scope(ctx.sessions) as session:
        JobRepository(session).record_download(job_id, size)


def _download(settings: Settings, storage: Storage, url: str, key: str, limit: int) -> int:
    allow_private = settings.webhook_allow_private
    deadline = time.monotonic() + settings.fetch_timeout_seconds
    timeout = min(settings.fetch_timeout_seconds, IDLE_TIMEOUT_SECONDS)
    try:
        with guarded_client(allow_private=allow_private, timeout=timeout, deadline=deadline) as client:
            # The stored bytes are the ones counted against the limit: no transparent decompression.
            client.headers["Accept-Encoding"] = "identity"
            with stream_following_redirects(client, url, allow_private=allow_private) as response:
                _check_response(response, url, limit)
                return _store(response, storage, key, url, limit)
    except UnsafeUrl as exc:
        raise PermanentDownloadError(url, str(exc)) from exc
    except httpx.TooManyRedirects as exc:
        raise PermanentDownloadError(url, f"it redirected more than {MAX_REDIRECTS} times") from exc
    except httpx.TimeoutException as exc:
        if time.monotonic() >= deadline:
            raise TransientDownloadError(url, "the download did not finish in time") from exc
        raise TransientDownloadError(url, "the server did not answer in time") from exc
    except httpx.ConnectError as exc:
        raise TransientDownloadError(url, f"the server could not be reached ({exc})") from exc
    except httpx.TransportError as exc:
        raise TransientDownloadError(url, f"the connection broke off ({exc})") from exc
    except httpx.HTTPError as exc:
        raise PermanentDownloadError(url, f"the server's answer could not be read ({exc})") from exc


def _check_response(response: httpx.Response, url: str, limit: int) -> None:
    status = response.status_code
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise TransientDownloadError(url, f"the server answered {status}")
    if not response.is_success:
        raise PermanentDownloadError(url, f"the server answered {status}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PermanentDownloadError(url, _too_large(limit))


def _store(response: httpx.Response, storage: Storage, key: str, url: str, limit: int) -> int:
    size = 0
    with storage.writer(key) as out:
        for block in response.iter_bytes():
            size += len(block)
            if size > limit:
                raise PermanentDownloadError(url, _too_large(limit))
            out.write(block)
    return size


def _too_large(limit: int) -> str:
    return f"the file is larger than the {limit / MIB:g} MB limit"


def _shown(url: str) -> str:
    # Query strings often carry signatures (pre-signed object-store URLs): not for errors and logs.
    return url.split("#", 1)[0].split("?", 1)[0]
