"""The web app's pages and assets, served by the API with a strict security policy; every other
response keeps working as before and gets `nosniff`. Both stacks."""

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from api.routers.web import INDEX, PAGES
from api.security_headers import SecurityHeaders, content_security_policy
from core.config import Settings

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
WEB_HEADERS = {
    "content-security-policy": POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
PAGE_PATHS = [page.replace("{job_id}", "3f1c2a4e-0000-4000-8000-000000000000") for page in PAGES]


def assert_web_headers(response) -> None:
    for name, value in WEB_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)


@pytest.mark.parametrize("path", PAGE_PATHS)
def test_each_page_path_is_the_app_with_its_security_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == INDEX.read_text()
    assert response.headers["cache-control"] == "no-cache"
    assert_web_headers(response)


def test_assets_are_served_under_static_with_the_same_headers(client):
    response = client.get("/static/app.js")
    assert response.status_code == 200, response.text
    assert "javascript" in response.headers["content-type"]
    assert response.headers["cache-control"] == "no-cache"
    assert_web_headers(response)
    # no-cache: the browser asks again each time, and an unchanged file costs a 304.
    again = client.get("/static/app.js", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["cache-control"] == "no-cache"
    assert_web_headers(again)


@pytest.mark.parametrize(
    "path", ["/nope", "/jobs/1/extra", "/admin", "/admin/users/1", "/static/nope.js", "/static/../app.py"]
)
def test_an_unknown_path_is_404(client, path):
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_keep_their_inline_script(client, path):
    response = client.get(path)
    assert response.status_code == 200 and "<script" in response.text
    assert "content-security-policy" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


def test_api_responses_get_nosniff_and_no_page_policy(client):
    for path in ("/openapi.json", "/health/live", "/v1/auth/me"):
        response = client.get(path)
        assert response.headers.get_list("x-content-type-options") == ["nosniff"], path
        assert "content-security-policy" not in response.headers, path


def test_the_dashboard_keeps_its_own_policy(client):
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    assert page.headers.get_list("content-security-policy") == ["frame-ancestors 'none'"]
    assert page.headers["x-content-type-options"] == "nosniff"


# --- the policy ----------------------------------------------------------------------------------


def test_uploads_may_go_to_the_s3_endpoint_when_storage_is_s3():
    minio = Settings(storage_backend="s3", s3_endpoint_url="http://127.0.0.1:9000/some/path")
    assert "connect-src 'self' http://127.0.0.1:9000;" in content_security_policy(minio)
    aws = Settings(storage_backend="s3", s3_bucket="verbatim", s3_region="eu-west-1")
    assert (
        "connect-src 'self' https://verbatim.s3.amazonaws.com https://verbatim.s3.eu-west-1.amazonaws.com;"
        in content_security_policy(aws)
    )
    dotted = Settings(storage_backend="s3", s3_bucket="media.example", s3_region="eu-west-1")
    assert "https://s3.eu-west-1.amazonaws.com;" in content_security_policy(dotted)
    # Local storage takes uploads at the API itself.
    assert content_security_policy(Settings(s3_endpoint_url="http://127.0.0.1:9000")) == POLICY


@pytest.mark.parametrize("stack", ["embedded"])
def test_the_served_policy_names_the_s3_endpoint(settings, redis, s3_endpoint, s3_bucket, stack):
    from fastapi.testclient import TestClient

    from api.app import create_app

    on_s3 = settings.model_copy(
        update={"storage_backend": "s3", "s3_endpoint_url": s3_endpoint, "s3_bucket": s3_bucket}
    )
    with TestClient(create_app(on_s3, redis)) as client:
        policy = client.get("/").headers["content-security-policy"]
    assert f"connect-src 'self' {s3_endpoint};" in policy


def test_the_headers_never_hold_back_a_streamed_body():
    """Each part of a streamed response (events, audio) passes on as it comes."""
    first_part_sent = asyncio.Event()

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.wait_for(first_part_sent.wait(), timeout=5)
        await send({"type": "http.response.body", "body": b"second", "more_body": False})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message.get("body") == b"first":
            first_part_sent.set()

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    app = SecurityHeaders(stream, headers={"X-Test": "1"}, is_web_path=lambda path: path == "/")
    expected = {"/": (b"x-test", b"1"), "/v1/jobs/1/events": (b"x-content-type-options", b"nosniff")}
    for path, header in expected.items():
        sent.clear()
        first_part_sent.clear()
        asyncio.run(app({"type": "http", "path": path, "headers": []}, receive, send))
        assert header in sent[0]["headers"]
        assert [m.get("body") for m in sent[1:]] == [b"first", b"second"]
