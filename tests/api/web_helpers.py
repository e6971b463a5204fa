"""Plain functions for the web app's tests: sign in to a web session, and send its cookie and CSRF
token the way the page's script does. Credentials are sent explicitly, never left in the test
client's cookie jar, so each request shows what it carries."""

from dataclasses import dataclass
from typing import Any

from api.web_session import CSRF_HEADER, WEB_COOKIE
from tests.api.auth_helpers import PASSWORD, register

SAME_ORIGIN = "http://testserver"


@dataclass(frozen=True)
class WebSession:
    cookie: str
    csrf_token: str
    body: dict[str, Any]

    def reads(self, **headers: str) -> dict[str, str]:
        """Headers of a request that changes nothing: the cookie alone."""
        return {"Cookie": f"{WEB_COOKIE}={self.cookie}", **headers}

    def writes(self, **headers: str) -> dict[str, str]:
        """Headers of a write from the page itself: cookie, same origin, CSRF token."""
        return self.reads(Origin=SAME_ORIGIN, **{CSRF_HEADER: self.csrf_token}, **headers)


def web_cookie(response: Any) -> tuple[str, str]:
    """(value, the whole Set-Cookie line) of the web session cookie the response sets."""
    lines = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{WEB_COOKIE}=")]
    assert len(lines) == 1, response.headers
    return lines[0].split(";")[0].split("=", 1)[1], lines[0]


def sign_in(client: Any, email: str, password: str = PASSWORD, **headers: str) -> Any:
    response = client.post("/v1/web/session", json={"email": email, "password": password}, headers=headers)
    client.cookies.clear()
    return response


def web_session(client: Any, email: str) -> WebSession:
    """Register `email` and sign in to a web session."""
    assert register(client, email).status_code == 202
    response = sign_in(client, email, Origin=SAME_ORIGIN)
    assert response.status_code == 200, response.text
    cookie, _ = web_cookie(response)
    return WebSession(cookie=cookie, csrf_token=response.json()["csrf_token"], body=response.json())
