"""The web app as a customer uses it: headless Chromium on the real service (the launcher, the
API, one worker, PostgreSQL and Redis) registers, signs out and in, uploads recordings through the
page, watches the long one's transcript grow, plays and downloads a transcript; each page is
photographed at desktop and phone sizes and checked with axe-core. Then, without a browser, the
session cookie is tried where it must not work: another user's job, and writes from another site.

`VERBATIM_SCREENSHOTS=docs/screenshots` keeps the screenshots there (else in the test's tmp dir)."""

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.browser import Page, chromium, chromium_path
from tests.conftest import ROOT, require_service, speech, word_error_rate
from tests.e2e.support import LONGFORM, Service, wait_until

pytestmark = pytest.mark.e2e

AXE = ROOT / "tests" / "web" / "node_modules" / "axe-core" / "axe.min.js"
# Desktop, and a phone (iPhone 12-14 sized) with its touch and viewport rules.
VIEWPORTS = [(1280, 800, False), (390, 844, True)]
PASSWORD = "a customer's long passphrase"
COOKIE = "verbatim_web"
JOB_STATUS = "document.querySelector('#job-status')?.dataset.status"
SEGMENTS = "[...document.querySelectorAll('#transcript .segment')]"


# --- the service and the browser -----------------------------------------------------------------


@pytest.fixture(scope="module")
def service(service_factory: Callable[..., Service], postgres_database: str, redis_url: str) -> Service:
    # One worker: the long recording's chunks come one after another, slowly enough to be watched.
    Redis.from_url(redis_url).flushdb()
    return service_factory(workers=1, DATABASE_URL=postgres_database, REDIS_URL=redis_url)


@pytest.fixture(scope="module")
def axe_source() -> str:
    require_service("axe-core (npm ci --prefix tests/web)", AXE.read_text)
    return AXE.read_text()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """One tab for the module; each test signs in as whom it needs."""
    require_service("Chromium", chromium_path)
    with chromium(tmp_path_factory.mktemp("chromium")) as started:
        started.call("Log.enable")  # the browser reports what the CSP refused as log entries
        yield started


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("VERBATIM_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def no_csp_violations(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that drives the page ends with no inline script or style refused by the CSP."""
    yield
    if "page" not in request.fixturenames:
        return
    page: Page = request.getfixturevalue("page")
    page.evaluate("0")  # the answer comes after every log entry sent before it
    entries = [e["params"]["entry"] for e in page.take_events("Log.entryAdded")]
    refused = [e["text"] for e in entries if "Content Security Policy" in e["text"]]
    for entry in entries:
        print(f"console {entry['level']}: {entry['text']} {entry.get('url', '')}")
    assert not refused, "\n".join(refused)


def register(service: Service, email: str) -> None:
    response = httpx.post(f"{service.url}/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 202, response.text


def new_email(who: str) -> str:
    # The database is the test session's, shared with other modules: each run's users are new.
    return f"{who}-{uuid.uuid4().hex[:8]}@example.com"


# --- driving the app -----------------------------------------------------------------------------


def q(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)})"


def exists(selector: str) -> str:
    return f"{q(selector)} !== null"


def at(path: str, selector: str) -> str:
    return f"location.pathname === {json.dumps(path)} && {exists(selector)}"


def sign_in(page: Page, service: Service, email: str) -> None:
    page.open(f"{service.url}/login")
    page.wait_for(exists("form#sign-in-form"), "the sign-in form")
    page.type("#sign-in-form input#email", email)
    page.type("#sign-in-form input#password", PASSWORD)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for(at("/", "#usage"), "the upload page after signing in")


def sign_in_afresh(page: Page, service: Service, email: str) -> None:
    page.call("Network.clearBrowserCookies")
    sign_in(page, service, email)


def upload(page: Page, recording: Path) -> str:
    """Pick the file on the upload page; the job's id, once its link appears in the uploads list."""
    page.wait_for(exists("input#file-input[type=file][multiple]"), "the file input")
    page.choose_files("input#file-input", recording)
    link = f"ul#uploads li[data-file={json.dumps(recording.name)}] a[data-job-id]"
    job_id: str = page.wait_for(f"{q(link)}?.dataset.jobId", f"the job link of {recording.name}", 120)
    assert page.evaluate(f"{q(link)}.getAttribute('href')") == f"/jobs/{job_id}"
    return job_id


def open_job(page: Page, job_id: str) -> None:
    """Follow the job's link from the uploads list (a client-side route, no reload)."""
    page.click(f"ul#uploads a[data-job-id={json.dumps(job_id)}]")
    page.wait_for(at(f"/jobs/{job_id}", "#job-status"), "the job page")


def wait_completed(page: Page, timeout: float) -> None:
    status = page.wait_for(
        f"['completed', 'failed', 'canceled'].includes({JOB_STATUS}) && {JOB_STATUS}",
        "the job to end",
        timeout,
    )
    assert status == "completed", page.evaluate("document.querySelector('main').innerText")
    page.wait_for(
        f"{q('#transcript')}?.dataset.partial === 'false' && {SEGMENTS}.length > 0", "the final transcript"
    )


def transcript_text(page: Page) -> str:
    return str(page.evaluate(f"{q('#transcript')}.innerText")).replace("\n", " ")


def storage_values(page: Page) -> list[str]:
    return list(
        page.evaluate(
            "[localStorage, sessionStorage].flatMap(s => Object.keys(s).map(k => k + '=' + s.getItem(k)))"
        )
    )


def session_cookie(page: Page) -> dict[str, Any] | None:
    cookies = page.call("Network.getCookies")["cookies"]
    return next((c for c in cookies if c["name"] == COOKIE), None)


def download(page: Page, selector: str, into: Path) -> Path:
    """Click a download link; the file Chromium saved."""
    into.mkdir()
    page.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(into), eventsEnabled=True)
    page.click(selector)
    done = page.wait_event(
        "Browser.downloadProgress", lambda p: p["state"] in ("completed", "canceled"), timeout=60
    )
    assert done["params"]["state"] == "completed", done
    return Path(done["params"]["filePath"])


# --- looking at a page ---------------------------------------------------------------------------

SERIOUS_VIOLATIONS = """axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => `${v.id} (${v.impact}): ${v.help}; ${v.nodes.map(n => n.target.join(' ')).join(', ')}`))"""


def look(page: Page, name: str, screenshots: Path, axe_source: str) -> list[str]:
    photograph(page, name, screenshots)
    return audit(page, name, axe_source)


def photograph(page: Page, name: str, screenshots: Path) -> None:
    for width, height, mobile in VIEWPORTS:
        resize(page, width, height, mobile)
        print(f"screenshot: {page.screenshot(screenshots / f'{name}-{width}x{height}.png')}")
    page.call("Emulation.clearDeviceMetricsOverride")


def audit(page: Page, name: str, axe_source: str) -> list[str]:
    """axe-core's serious and critical findings at each size, and any sideways scrolling."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(axe_source)
    found: list[str] = []
    for width, height, mobile in VIEWPORTS:
        resize(page, width, height, mobile)
        at_size = f"{name} at {width}x{height}"
        found += [
            f"{at_size}: {v}" for v in page.evaluate(SERIOUS_VIOLATIONS, await_promise=True, timeout=120)
        ]
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > width:
            found.append(f"{at_size}: the page is {scroll_width} px wide, wider than the screen")
    page.call("Emulation.clearDeviceMetricsOverride")
    for line in found:
        print(line)
    return found


def resize(page: Page, width: int, height: int, mobile: bool) -> None:
    page.set_viewport(width, height, mobile)
    # Two frames: the new size is laid out and painted before anything looks at it.
    page.evaluate(
        "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", await_promise=True
    )


# --- 1. the short recording, end to end ----------------------------------------------------------


def test_a_new_customer_registers_signs_out_and_in_uploads_and_plays_and_downloads_the_transcript(
    service: Service, page: Page, tmp_path: Path
) -> None:
    email = new_email("jfk")
    # Signed out, any page shows the sign-in form, which links to registering.
    page.open(f"{service.url}/jobs", lands_on="/login")
    page.wait_for(at("/login", "form#sign-in-form"), "the sign-in page")
    page.click("a[href='/register']")
    page.wait_for(at("/register", "form#register-form"), "the register page")
    page.type("#register-form input#email", email)
    page.type("#register-form input#password", PASSWORD)
    page.type("#register-form input#password-confirm", PASSWORD)
    page.click("#register-form button[type=submit]")
    page.wait_for(at("/", "#usage"), "the upload page after registering")
    assert page.evaluate("document.title").endswith(" · Verbatim")

    # The session lives in an HttpOnly cookie; no script-readable store holds it or the CSRF token.
    cookie = session_cookie(page)
    assert cookie is not None
    assert (cookie["httpOnly"], cookie.get("sameSite")) == (True, "Strict"), cookie
    assert COOKIE not in page.evaluate("document.cookie")
    csrf = page.evaluate(
        "fetch('/v1/web/session', {credentials: 'same-origin'}).then(r => r.json()).then(b => b.csrf_token)",
        await_promise=True,
    )
    stored = storage_values(page)
    assert not [v for v in stored if cookie["value"] in v or csrf in v or "eyJ" in v], stored

    page.click("button#sign-out")
    page.wait_for(at("/login", "form#sign-in-form"), "the sign-in page after signing out")
    assert session_cookie(page) is None
    assert page.evaluate("fetch('/v1/auth/me').then(r => r.status)", await_promise=True) == 401
    sign_in(page, service, email)

    job_id = upload(page, speech("jfk/jfk.flac"))
    open_job(page, job_id)
    wait_completed(page, timeout=180)
    assert "ask not what your country" in transcript_text(page).lower()

    # A click on a segment seeks the player (which has loaded the audio's metadata) to its start.
    player = q("audio#player")
    assert page.evaluate(f"{player}.getAttribute('src')") == f"/v1/jobs/{job_id}/audio"
    page.wait_for(f"{player}.readyState >= 1", "the player to load the audio's metadata")
    assert page.evaluate(f"{SEGMENTS}.length") >= 2, transcript_text(page)
    start = float(page.evaluate(f"{SEGMENTS}[1].dataset.start"))
    page.evaluate(
        f"{player}.addEventListener('seeking', e => window.seekedTo = e.target.currentTime, {{once: true}})"
    )
    page.evaluate(f"{SEGMENTS}[1].click()", user_gesture=True)
    seeked = page.wait_for("'seekedTo' in window && {to: window.seekedTo}", "the player to seek", 10)["to"]
    assert abs(seeked - start) <= 0.3, (seeked, start)
    second = f"{SEGMENTS}[1]"
    page.wait_for(
        f"{second}.classList.contains('active') && {second}.getAttribute('aria-current') === 'true'",
        "the second segment to be marked as playing",
        10,
    )

    srt = download(page, "a[data-format=srt]", tmp_path / "downloads").read_text()
    cues = [cue.splitlines() for cue in srt.strip().split("\n\n")]
    assert [cue[0] for cue in cues] == [str(n) for n in range(1, len(cues) + 1)], srt
    timing = re.compile(r"^\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d$")
    assert all(timing.match(cue[1]) for cue in cues), srt
    words = " ".join(line for cue in cues for line in cue[2:]).lower()
    assert "ask not what your country" in words, srt


# --- 2. the long recording, watched while it runs ------------------------------------------------


@pytest.fixture(scope="module")
def customer(service: Service) -> str:
    email = new_email("reader")
    register(service, email)
    return email


@dataclass
class Watched:
    job_id: str
    partial: list[str]  # the segments' text the first time the running job's page showed some
    status_when_photographed: str
    final_text: str
    findings: list[str]  # the running page's, for the accessibility test


RUNNING_TEXT = f"""{JOB_STATUS} === 'completed' ? {{status: 'completed', segments: []}}
    : {q("#transcript")}?.dataset.partial === 'true' && {SEGMENTS}.some(s => s.innerText.trim())
    && {{status: {JOB_STATUS}, segments: {SEGMENTS}.map(s => s.innerText.trim())}}"""


@pytest.fixture(scope="module")
def watched_longform(
    service: Service, page: Page, customer: str, screenshots: Path, axe_source: str
) -> Watched:
    """The long recording uploaded through the page, whose job page is watched until text shows
    while the job still runs; then the running page is photographed and checked, and the job is
    left to finish."""
    sign_in_afresh(page, service, customer)
    job_id = upload(page, speech(LONGFORM))
    open_job(page, job_id)
    seen = page.wait_for(RUNNING_TEXT, "text on the page, or the job's end", 300)
    if seen["segments"]:
        photograph(page, "job-running", screenshots)
    status_when_photographed = page.evaluate(JOB_STATUS)
    findings = audit(page, "job-running", axe_source) if seen["segments"] else []
    wait_completed(page, timeout=600)
    return Watched(job_id, seen["segments"], status_when_photographed, transcript_text(page), findings)


def test_the_long_recordings_transcript_grows_on_its_page_while_the_job_runs(
    watched_longform: Watched,
) -> None:
    w = watched_longform
    assert w.partial, "no transcript text showed on the job page before the job completed"
    assert w.status_when_photographed != "completed", "the job ended before its running page was photographed"
    reference = speech(LONGFORM).with_suffix(".txt").read_text()
    assert word_error_rate(reference, w.final_text) < 0.15, w.final_text
    # What showed while running is the start of what the finished page shows.
    first_words = " ".join(w.partial[0].split()[:4]).lower()
    assert first_words in " ".join(w.final_text.split()).lower(), (w.partial, w.final_text)


# --- 3. every page at desktop and phone sizes ----------------------------------------------------


def test_the_upload_running_transcript_and_keys_pages_pass_axe_and_fit_a_phone(
    service: Service, page: Page, customer: str, watched_longform: Watched, screenshots: Path, axe_source: str
) -> None:
    found = list(watched_longform.findings)
    sign_in_afresh(page, service, customer)
    page.wait_for(exists("#drop-zone"), "the drop zone")
    found += look(page, "upload", screenshots, axe_source)

    page.open(f"{service.url}/jobs/{watched_longform.job_id}")
    wait_completed(page, timeout=30)
    found += look(page, "transcript", screenshots, axe_source)

    page.open(f"{service.url}/keys")
    page.type("#key-form input#key-name", "laptop")
    page.click("#key-form button[type=submit]")
    page.wait_for(f"{q('#new-key code')}?.textContent.trim().startsWith('vbt_')", "the new key, shown once")
    page.wait_for(exists("table#keys-table tbody tr[data-key-id]"), "the key in the list")
    found += look(page, "keys", screenshots, axe_source)
    assert not found, "\n".join(found)


# --- 4. the session cookie where it must not work (no browser) -----------------------------------

EVIL = "https://evil.example"


@dataclass
class WebUser:
    http: httpx.Client  # holds this user's session cookie
    csrf: str

    def writes_from(self, origin: str) -> dict[str, str]:
        return {"Origin": origin, "X-CSRF-Token": self.csrf}


def web_user(service: Service, who: str) -> WebUser:
    email = new_email(who)
    register(service, email)
    http = httpx.Client(base_url=service.url, timeout=60)
    signed_in = http.post("/v1/web/session", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    assert COOKIE in http.cookies
    return WebUser(http, signed_in.json()["csrf_token"])


def submit_as(user: WebUser, service: Service, recording: Path) -> str:
    with recording.open("rb") as f:
        submitted = user.http.post(
            "/v1/jobs", files={"file": (recording.name, f)}, headers=user.writes_from(service.url)
        )
    assert submitted.status_code == 202, submitted.text
    return str(submitted.json()["id"])


def test_another_users_job_audio_and_transcript_are_not_found_with_their_own_session_cookie(
    service: Service,
) -> None:
    owner, other = web_user(service, "owner"), web_user(service, "other")
    job_id = submit_as(owner, service, speech("jfk/jfk.flac"))
    job = f"/v1/jobs/{job_id}"
    wait_until(lambda: owner.http.get(job).json()["status"] == "completed", 180, "the owner's job")
    paths = [job, f"{job}/audio", f"{job}/download?format=srt"]

    assert [owner.http.get(p).status_code for p in paths] == [200, 200, 307]
    assert [other.http.get(p).status_code for p in paths] == [404, 404, 404]
    assert [httpx.get(service.url + p).status_code for p in paths] == [401, 401, 401]


def test_a_write_with_the_session_cookie_from_another_site_is_refused_and_changes_nothing(
    service: Service,
) -> None:
    user = web_user(service, "target")
    job_id = submit_as(user, service, speech("jfk/jfk.flac"))
    forged = [
        user.writes_from(EVIL),  # the token leaked, the request still comes from elsewhere
        {"Referer": f"{EVIL}/page", "X-CSRF-Token": user.csrf},  # no Origin: the Referer decides
        {"Origin": service.url},  # this site, but no token
        {"Origin": service.url, "X-CSRF-Token": "not-the-token"},
    ]
    for headers in forged:
        assert user.http.post("/v1/api-keys", json={"name": "stolen"}, headers=headers).status_code == 403
    assert user.http.delete(f"/v1/jobs/{job_id}", headers=user.writes_from(EVIL)).status_code == 403
    assert user.http.delete("/v1/web/session", headers=user.writes_from(EVIL)).status_code == 403

    assert user.http.get("/v1/api-keys").json() == []
    assert user.http.get(f"/v1/jobs/{job_id}").status_code == 200
    assert user.http.get("/v1/web/session").status_code == 200
    # The same write from the page itself goes through.
    created = user.http.post("/v1/api-keys", json={"name": "laptop"}, headers=user.writes_from(service.url))
    assert created.status_code == 201, created.text
    assert [k["name"] for k in user.http.get("/v1/api-keys").json()] == ["laptop"]


class InlineCode(HTMLParser):
    """Inline script, inline style and event-handler attributes in a page's markup."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        self.found += [f"<{tag} {name}=...>" for name in names if name == "style" or name.startswith("on")]
        self._in_script = tag == "script" and "src" not in names
        self.found += ["<style>"] if tag == "style" else []

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"<script>{data.strip()[:40]}")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def csp(response: httpx.Response) -> dict[str, list[str]]:
    directives = (d.split() for d in response.headers["content-security-policy"].split(";") if d.strip())
    return {d[0]: d[1:] for d in directives}


@pytest.mark.parametrize("path", ["/", "/login", "/jobs/some-job", "/keys", "/static/app.js"])
def test_the_pages_forbid_inline_script_and_framing(service: Service, path: str) -> None:
    response = httpx.get(service.url + path)
    assert response.status_code == 200, response.text
    policy = csp(response)
    assert policy["script-src"] == ["'self'"], policy
    assert policy["frame-ancestors"] == ["'none'"], policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    if response.headers["content-type"].startswith("text/html"):
        parser = InlineCode()
        parser.feed(response.text)
        assert not parser.found, parser.found
