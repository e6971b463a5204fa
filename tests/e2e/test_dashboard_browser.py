"""The RQ dashboard as an operator sees it: headless Chromium (Debian's `chromium`, driven over the
DevTools protocol; nothing is downloaded) signs in as an admin on the real service — the launcher,
the API, two workers, PostgreSQL and Redis — and finds the three queues and the live workers."""

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq import Worker

from core.queues import QUEUE_NAMES
from tests.browser import Page, chromium, chromium_path
from tests.conftest import ROOT, require_service
from tests.e2e.support import BOOTSTRAP_KEY, Service

pytestmark = pytest.mark.e2e

WORKERS = 2
EMAIL, PASSWORD = "ops@example.com", "an admin's long passphrase"


# --- the service ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(service_factory: Callable[..., Service], postgres_database: str, redis_url: str) -> Service:
    Redis.from_url(redis_url).flushdb()
    return service_factory(workers=WORKERS, DATABASE_URL=postgres_database, REDIS_URL=redis_url)


@pytest.fixture(scope="module")
def admin(service: Service, postgres_database: str) -> tuple[str, str]:
    """An admin who signs in with a password: registered like anyone, then made an admin by the
    operator's script (no API grants the flag)."""
    response = httpx.post(f"{service.url}/v1/auth/register", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 202, response.text
    made = subprocess.run(
        [sys.executable, "-m", "scripts.make_admin", EMAIL],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": postgres_database},
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return EMAIL, PASSWORD


# --- the browser ---------------------------------------------------------------------------------


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    require_service("Chromium", chromium_path)
    with chromium(tmp_path) as started:
        yield started


# --- the test ------------------------------------------------------------------------------------

QUEUE_ROWS = """[...document.querySelectorAll('#queues tbody tr[data-role=queue] td:first-child')]
    .map(td => td.textContent.trim())"""
WORKER_ROWS = """[...document.querySelectorAll('#workers tbody tr[data-role=worker]')]
    .map(tr => tr.textContent.replace(/\\s+/g, ' ').trim())"""


def test_an_admin_signs_in_with_chromium_and_sees_the_queues_and_live_workers(
    service: Service, admin: tuple[str, str], page: Page, redis_url: str, tmp_path: Path
) -> None:
    email, password = admin
    # Anonymous: the dashboard's address shows the sign-in form, never the dashboard.
    page.open(f"{service.url}/dashboard/")
    assert page.evaluate("document.title") == "Verbatim · sign in"
    assert page.evaluate("document.querySelector('form[action=\"/dashboard/login\"]') !== null")
    assert page.evaluate("document.querySelector('#navbar-dashboard, table#queues') === null")
    page.screenshot(tmp_path / "dashboard-sign-in.png")

    page.evaluate(
        f"""document.querySelector('input[name=email]').value = {json.dumps(email)};
        document.querySelector('input[name=password]').value = {json.dumps(password)};
        document.querySelector('form[action="/dashboard/login"]').submit();"""
    )
    # The form's POST sets the cookie and sends the browser on to the dashboard, whose queue table
    # is filled in from /dashboard/0/data/queues.json.
    names = page.wait_for(
        f"location.pathname === '/dashboard/' && ({QUEUE_ROWS}.length === 3) && {QUEUE_ROWS}",
        "the dashboard to list the queues",
    )
    assert sorted(names) == sorted(QUEUE_NAMES.values())
    assert page.evaluate("document.title") == "RQ dashboard"
    # HttpOnly: the page's scripts cannot read the session.
    assert "verbatim_session" not in page.evaluate("document.cookie")
    print(f"queues screenshot: {page.screenshot(tmp_path / 'dashboard-queues.png')}")

    live = {w.name for w in Worker.all(connection=Redis.from_url(redis_url))}
    assert len(live) == WORKERS
    page.open(f"{service.url}/dashboard/0/view/workers")
    rows = page.wait_for(f"{WORKER_ROWS}.length === {WORKERS} && {WORKER_ROWS}", "the workers table")
    for name in live:
        assert any(row.startswith(name) for row in rows), (name, rows)
    assert all(row.endswith("stt_jobs_high, stt_jobs, stt_jobs_low") for row in rows), rows
    print(f"workers screenshot: {page.screenshot(tmp_path / 'dashboard-workers.png')}")


def test_anonymous_and_non_admin_requests_are_refused_by_the_running_service(service: Service) -> None:
    admin_key = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    with httpx.Client(base_url=service.url, timeout=30) as http:
        created = http.post(
            "/v1/admin/users", json={"email": "pro@example.com", "tier": "pro"}, headers=admin_key
        )
        assert created.status_code == 201, created.text
        user_key = {"Authorization": f"Bearer {created.json()['api_key']}"}
        for path in ("/dashboard", "/dashboard/", "/dashboard/0/data/workers.json"):
            assert http.get(path).status_code == 401
            assert http.get(path, headers={"Accept": "text/html"}).status_code == 401
            assert http.get(path, headers=user_key).status_code == 403
        assert http.get("/dashboard/", headers=admin_key).status_code == 200
