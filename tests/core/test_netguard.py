"""The SSRF guard. No test sends traffic outside 127.0.0.0/8 and ::1: DNS is a patched `resolve`,
"public" servers are canned byte streams behind a patched `httpcore.SyncBackend.connect_tcp`, and
every connection attempt is recorded, so refusals are proven to happen before any connection."""

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from core import netguard
from core.netguard import UnsafeUrl, check_url, guarded_client, stream_following_redirects
from tests.fakes.tarpit import tarpit

PUBLIC_IP = "93.184.216.34"  # example.com's, never dialled: the fake network answers for it


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FakeStream(httpcore.NetworkStream):
    """A server at a public address, played from canned bytes; TLS is pretended, SNI recorded."""

    def __init__(self, network: "Network", reply: bytes) -> None:
        self.network, self.reply = network, reply

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.network.sent += buffer

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data, self.reply = self.reply[:max_bytes], self.reply[max_bytes:]
        return data

    def close(self) -> None:
        pass

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        self.network.sni.append(server_hostname)
        return self

    def get_extra_info(self, info: str) -> None:
        return None


class Network:
    """Stands in for the network: records every dial, fails the test on any it does not allow."""

    def __init__(self) -> None:
        self.dials: list[tuple[str, int]] = []
        self.forbid_all = False  # refusal tests: any connection at all fails the test
        self.replies: dict[str, bytes] = {}  # public address -> what its fake server answers
        self.unreachable: set[str] = set()
        self.sent = b""
        self.sni: list[str | None] = []


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    net = Network()
    real_connect = httpcore.SyncBackend.connect_tcp
    real_create_connection = socket.create_connection

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        net.dials.append((host, port))
        if net.forbid_all:
            pytest.fail(f"a refused request still connected to {host}:{port}")
        if host in net.unreachable:
            raise httpcore.ConnectError(f"test network: {host} is unreachable")
        if host in net.replies:
            return FakeStream(net, net.replies[host])
        if not is_loopback(host):
            pytest.fail(f"a test tried to connect to {host}:{port}, outside loopback")
        return real_connect(self, host, port, timeout, local_address, socket_options)

    def create_connection(address, *args, **kwargs):
        if net.forbid_all or not is_loopback(address[0]):
            pytest.fail(f"a socket connection to {address} was attempted")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return net


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, Callable[[], list[str]]]:
    """A resolver from a table; IP literals resolve as the OS does, without asking DNS."""
    table: dict[str, Callable[[], list[str]]] = {}

    def fake_resolve(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]()
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        return [str(info[4][0]) for info in infos]

    monkeypatch.setattr(netguard, "resolve", fake_resolve)
    return table


def answers(*addresses: str) -> Callable[[], list[str]]:
    return lambda: list(addresses)


def reply(status: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- refused targets -----------------------------------------------------------------------------

REFUSED = {
    "https://127.0.0.1/": "127.0.0.1 is a loopback address",
    "https://127.1/": "127.1 is not a valid IP address",
    "https://0x7f000001/": "0x7f000001 is not a valid IP address",
    "https://2130706433/": "2130706433 is not a valid IP address",
    "https://0177.0.0.1/": "not a valid URL",
    "https://[::1]/": "::1 is a loopback address",
    "https://[::ffff:127.0.0.1]/": "wrapping 127.0.0.1, a loopback address",
    "https://[64:ff9b::7f00:1]/": "wrapping 127.0.0.1, a loopback address",
    "https://[64:ff9b::a9fe:a9fe]/": "wrapping 169.254.169.254, a link-local address",
    "https://[64:ff9b:1::a00:1]/": "a local-use NAT64 address",
    "https://[2002:7f00:1::]/": "wrapping 127.0.0.1, a loopback address",
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/": "wrapping 127.0.0.1, a loopback address",
    "https://[::7f00:1]/": "a reserved address",
    "https://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
    "https://[fe80::1]/": "a link-local address",
    "https://10.0.0.5/": "10.0.0.5 is a private address",
    "https://172.16.3.4/": "a private address",
    "https://192.168.1.1/": "a private address",
    "https://[fd00::1]/": "a private address",
    "https://100.64.0.1/": "a shared (carrier-grade NAT) address",
    "https://0.0.0.0/": "an unspecified address",
    "https://224.0.0.1/": "a multicast address",
    "https://192.0.2.10/": "a non-public address",
    "https://240.0.0.1/": "a reserved address",
    "https://localhost/": "localhost resolves to 127.0.0.1, a loopback address",
    "https://internal.test/": "internal.test resolves to 10.0.0.5, a private address",
    "https://mixed.test/": "mixed.test resolves to 10.0.0.5, a private address",
    "http://public.test/": "the URL must use https",
    "ftp://public.test/": "the URL must use https",
    "file:///etc/passwd": "must be absolute, with a host",
    "https://user:secret@public.test/": "must not contain credentials",
    "https:///path": "must be absolute, with a host",
    "not a url": "must be absolute, with a host",
}


@pytest.fixture
def names(dns):
    dns["public.test"] = answers(PUBLIC_IP)
    dns["internal.test"] = answers("10.0.0.5")
    dns["mixed.test"] = answers(PUBLIC_IP, "10.0.0.5")  # every address must pass, not the first
    dns["localhost"] = answers("127.0.0.1", "::1")
    return dns


@pytest.mark.parametrize(("url", "reason"), REFUSED.items())
def test_check_url_refuses_with_a_reason(url, reason, names, network):
    network.forbid_all = True
    with pytest.raises(UnsafeUrl, match=re.escape(reason)):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("url", REFUSED)
def test_the_client_refuses_before_connecting(url, names, network):
    network.forbid_all = True
    with (
        guarded_client(allow_private=False, timeout=5) as client,
        pytest.raises((UnsafeUrl, httpx.UnsupportedProtocol, httpx.InvalidURL)),
    ):
        client.get(url)
    assert network.dials == []


@pytest.mark.parametrize(
    "url", ["https://127.1/", "https://0x7f000001/", "https://2130706433/", "https://[::ffff:127.0.0.1]/"]
)
def test_obfuscated_loopback_is_refused_with_the_real_resolver(url, network):
    # The real `resolve`: numeric hosts resolve locally, and the OS reads all of these as 127.0.0.1.
    network.forbid_all = True
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_private=False)


def test_a_public_address_passes(names, network):
    network.forbid_all = True
    check_url("https://public.test/hook", allow_private=False)
    check_url(f"https://{PUBLIC_IP}:8443/hook", allow_private=False)
    check_url("https://[64:ff9b::5db8:d822]/", allow_private=False)  # NAT64 of a public address
    assert network.dials == []


def test_a_name_that_does_not_resolve_is_refused(dns, network):
    network.forbid_all = True

    def unknown() -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    dns["gone.test"] = unknown
    with pytest.raises(UnsafeUrl, match=r"gone\.test does not resolve"):
        check_url("https://gone.test/", allow_private=False)
    with guarded_client(allow_private=False, timeout=5) as client, pytest.raises(httpx.ConnectError):
        client.get("https://gone.test/")
    assert network.dials == []


# --- the address checked is the address dialled --------------------------------------------------


def test_the_checked_address_is_dialled_with_the_hostname_for_tls_and_host(names, network):
    network.replies[PUBLIC_IP] = reply("200 OK", body=b"hello")
    with guarded_client(allow_private=False, timeout=5) as client:
        response = client.get("https://public.test/hook")
    assert response.status_code == 200 and response.content == b"hello"
    assert network.dials == [(PUBLIC_IP, 443)]
    assert network.sni == ["public.test"]
    assert b"\r\nHost: public.test\r\n" in network.sent


def test_an_unreachable_public_address_is_a_connect_error(names, network):
    network.unreachable.add(PUBLIC_IP)
    with guarded_client(allow_private=False, timeout=5) as client, pytest.raises(httpx.ConnectError):
        client.get("https://public.test/")
    assert network.dials == [(PUBLIC_IP, 443)]


def test_dns_rebinding_is_refused_at_send_time(dns, network):
    answers_in_turn = iter([[PUBLIC_IP], ["127.0.0.1"]])
    dns["rebind.test"] = lambda: next(answers_in_turn)
    check_url("https://rebind.test/hook", allow_private=False)  # registration: public
    network.forbid_all = True
    with (
        guarded_client(allow_private=False, timeout=5) as client,
        pytest.raises(UnsafeUrl, match=r"rebind.test resolves to 127.0.0.1, a loopback address"),
    ):
        client.post("https://rebind.test/hook", json={"event": "job.completed"})
    assert network.dials == []


# --- redirects -----------------------------------------------------------------------------------


def test_a_redirect_to_loopback_is_not_followed(names, network):
    network.replies[PUBLIC_IP] = reply("302 Found", {"Location": "https://127.0.0.1:9/secret"})
    with guarded_client(allow_private=False, timeout=5) as client:
        response = client.get("https://public.test/hook")
        assert response.status_code == 302  # not followed by the client
        with (
            pytest.raises(UnsafeUrl, match=r"127\.0\.0\.1 is a loopback address"),
            stream_following_redirects(client, "https://public.test/hook", allow_private=False),
        ):
            pass
    assert network.dials == [(PUBLIC_IP, 443)] * 2  # the public hop only, once per request


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("https://internal.test/x", "internal.test resolves to 10.0.0.5, a private address"),
        ("http://public.test/x", "the URL must use https"),
        ("https://[::ffff:7f00:1]/x", "a loopback address"),
    ],
)
def test_each_redirect_hop_is_checked(location, reason, names, network):
    network.replies[PUBLIC_IP] = reply("301 Moved Permanently", {"Location": location})
    with (
        guarded_client(allow_private=False, timeout=5) as client,
        pytest.raises(UnsafeUrl, match=re.escape(reason)),
        stream_following_redirects(client, "https://public.test/", allow_private=False),
    ):
        pass
    assert network.dials == [(PUBLIC_IP, 443)]


class Origin(BaseHTTPRequestHandler):
    """/hop/N redirects to /hop/N-1; /hop/0 redirects to /target; /target answers 200."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith("/hop/"):
            n = int(self.path.removeprefix("/hop/"))
            self.send_response(302)
            self.send_header("Location", f"/hop/{n - 1}" if n > 0 else "/target")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b"the target"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.paths  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_with_allow_private_loopback_redirects_are_followed_by_hand_only(origin, network):
    base, paths = origin
    with guarded_client(allow_private=True, timeout=5) as client:
        assert client.get(f"{base}/hop/0").status_code == 302
        assert paths == ["/hop/0"]  # the client itself never follows
        with stream_following_redirects(client, f"{base}/hop/2", allow_private=True) as response:
            assert response.read() == b"the target"
    assert paths == ["/hop/0", "/hop/2", "/hop/1", "/hop/0", "/target"]
    assert all(is_loopback(host) for host, _ in network.dials)


def test_more_than_five_redirects_are_refused(origin, network):
    base, paths = origin
    with (
        guarded_client(allow_private=True, timeout=5) as client,
        pytest.raises(httpx.TooManyRedirects),
        stream_following_redirects(client, f"{base}/hop/5", allow_private=True),
    ):
        pass
    assert len(paths) == 6 and "/target" not in paths


# --- allow_private -------------------------------------------------------------------------------


def test_allow_private_permits_http_and_private_targets_but_not_other_schemes_or_credentials(names, network):
    network.forbid_all = True
    check_url("http://127.0.0.1:8080/hook", allow_private=True)
    check_url("https://internal.test/", allow_private=True)
    check_url("http://[::1]/", allow_private=True)
    for url, reason in [
        ("ftp://127.0.0.1/", "the URL must use http or https"),
        ("http://user:pw@127.0.0.1/", "must not contain credentials"),
        ("http://127.1/", "not a valid IP address"),
    ]:
        with pytest.raises(UnsafeUrl, match=re.escape(reason)):
            check_url(url, allow_private=True)


# --- deadlines -----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["trickle", "continue"], ids=["trickled-headers", "endless-100-continue"])
def test_a_deadline_ends_an_answer_that_never_finishes_and_closes_the_connection(mode, network):
    """Bytes arrive every 0.1 s, well within the 5 s per-read timeout: only the deadline ends it."""
    with tarpit(mode, interval=0.1) as pit:
        started = time.monotonic()
        with (
            guarded_client(allow_private=True, timeout=5, deadline=started + 1.0) as client,
            pytest.raises(httpx.TimeoutException),
        ):
            client.post(pit.url, content=b"{}")
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 5
        while not pit.closed() and time.monotonic() < deadline:
            time.sleep(0.02)

        [connection] = pit.closed()
    assert 1.0 <= elapsed < 3.0, elapsed
    assert connection.sent >= 5  # the server kept sending until the client hung up
    assert connection.closed_at is not None and connection.closed_at - started < 3.0
