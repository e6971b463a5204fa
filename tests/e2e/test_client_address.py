"""Rate limits count per client behind a trusted reverse proxy, and a client cannot choose its own
bucket with X-Forwarded-For: the API process as the launchers start it (`API_COMMAND`).

Linux answers on the whole of 127.0.0.0/8, so one API trusts the proxy at 127.0.0.2 while a peer
connecting from 127.0.0.1 is a client that is no proxy of ours."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.processes import API_COMMAND, free_port, inherited_env, spawn, start_redis, terminate, wait_for

pytestmark = pytest.mark.e2e

PROXY, STRANGER = "127.0.0.2", "127.0.0.1"
PASSWORD = "a passphrase long enough"


def live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/live", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    """An API on 127.0.0.1 trusting the proxy at PROXY, one registration a window per client."""
    folder = tmp_path_factory.mktemp("proxy")
    shutil.copy(sqlite_template, folder / "verbatim.db")
    redis, redis_url = start_redis(folder)
    port = free_port()
    env = inherited_env() | {
        "DATABASE_URL": f"sqlite:///{folder / 'verbatim.db'}",
        "REDIS_URL": redis_url,
        "VERBATIM_DATA_DIR": str(folder / "data"),
        "VERBATIM_REGISTER_LIMIT_PER_IP": "1",
        "FORWARDED_ALLOW_IPS": PROXY,
    }
    process = spawn([*API_COMMAND, "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: live(url), "the API", process)
        yield url
    finally:
        terminate([process, redis], grace=10)


def register(url: str, email: str, forwarded_for: str, via: str) -> int:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=via), timeout=10) as client:
        response = client.post(
            f"{url}/v1/auth/register",
            json={"email": email, "password": PASSWORD},
            headers={"X-Forwarded-For": forwarded_for},
        )
    return response.status_code


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(api):
    assert register(api, "a1@example.com", "198.51.100.1", via=PROXY) == 202
    assert register(api, "a2@example.com", "198.51.100.1", via=PROXY) == 429
    assert register(api, "b1@example.com", "198.51.100.2", via=PROXY) == 202
    # What a client wrote itself comes before what the proxy appended: the proxy's entry counts.
    assert register(api, "a3@example.com", "203.0.113.77, 198.51.100.1", via=PROXY) == 429


def test_an_untrusted_peers_x_forwarded_for_is_ignored(api):
    assert register(api, "c1@example.com", "198.51.100.3", via=STRANGER) == 202
    assert register(api, "c2@example.com", "198.51.100.4", via=STRANGER) == 429  # its one bucket
    # The address it named was not charged: that client, through the proxy, still has its turn.
    assert register(api, "c3@example.com", "198.51.100.3", via=PROXY) == 202
