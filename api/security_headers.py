"""Security headers: the web app's pages and assets get a strict policy (no inline script or style,
no framing, nothing loaded from elsewhere); every response gets `X-Content-Type-Options: nosniff`.

Pure ASGI, so it only edits the response's start message and never holds a streamed body (events,
audio). `/docs` and `/redoc` are not web paths: their pages need inline script.
"""

from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.config import Settings

NOSNIFF = ("X-Content-Type-Options", "nosniff")


def storage_origins(settings: Settings) -> list[str]:
    """Where a browser sends a direct upload besides this origin: S3's presigned POSTs go straight
    to the bucket. With a custom endpoint (MinIO) boto3 addresses it by path, on that origin; on
    AWS, by virtual host on the global or the regional name (by path when the bucket has dots)."""
    if settings.storage_backend != "s3":
        return []
    if settings.s3_endpoint_url:
        endpoint = urlsplit(settings.s3_endpoint_url)
        return [f"{endpoint.scheme}://{endpoint.netloc}"]
    host = "s3" if "." in settings.s3_bucket else f"{settings.s3_bucket}.s3"
    return [f"https://{host}.amazonaws.com", f"https://{host}.{settings.s3_region}.amazonaws.com"]


def content_security_policy(settings: Settings) -> str:
    connect = " ".join(["'self'", *storage_origins(settings)])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"media-src 'self'; connect-src {connect}; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def web_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Frame-Options": "DENY",
        NOSNIFF[0]: NOSNIFF[1],
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


class SecurityHeaders:
    """`web_headers` on the responses of the paths `is_web_path` names; nosniff on all others."""

    def __init__(self, app: ASGIApp, *, headers: dict[str, str], is_web_path: Callable[[str], bool]) -> None:
        self._app = app
        self._headers = headers
        self._is_web_path = is_web_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        web = self._is_web_path(scope["path"])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if web:
                    headers.update(self._headers)
                else:
                    headers.setdefault(*NOSNIFF)
            await send(message)

        await self._app(scope, receive, with_headers)
