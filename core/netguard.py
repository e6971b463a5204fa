"""The SSRF guard for every request the service makes to an address a user gave.

Webhook delivery and URL ingestion reach out to URLs users chose, from inside our network. Unless
`allow_private` (`VERBATIM_WEBHOOK_ALLOW_PRIVATE`, for local use and tests) is set, a target must
be `https` and every address its host resolves to must be global unicast, also once an IPv4
address wrapped in an IPv6 one (IPv4-mapped, 6to4, NAT64, Teredo) is unwrapped.

The check happens twice: `check_url` when a URL is accepted (a clear error for the user), and at
every connection `guarded_client` opens. The client resolves the host itself (`resolve`, the one
place DNS is asked), checks every address, and dials a checked address, so a name that resolved to
a public address at registration and to 127.0.0.1 now (DNS rebinding) is refused, not dialled. It
never follows redirects; `stream_following_redirects` follows them one checked hop at a time.

A client may also carry a wall-clock `deadline`: httpx's `timeout` bounds each socket operation,
so a server that trickles a byte a second, or sends `100 Continue` after `100 Continue`, never
trips it. Under a deadline every connect, read and write waits at most until the deadline, and
then fails (`httpx.TimeoutException`), which closes the connection.
"""

import ipaddress
import re
import socket
import ssl
import time
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import httpcore
import httpx

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

IPAddress = IPv4Address | IPv6Address

_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
# NAT64: the well-known prefix embeds an IPv4 address in its last 32 bits (RFC 6052); the
# local-use prefix (RFC 8215) is operator-defined, so it is refused whole.
_NAT64 = IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")
_SHARED = IPv4Network("100.64.0.0/10")
# What inet_aton accepts besides dotted quads: `127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1`.
# Resolvers disagree on these, so they are refused outright rather than interpreted.
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*\.?", re.IGNORECASE)


class UnsafeUrl(ValueError):
    """A URL the service will not request; `str(exc)` says why, in words meant for the user."""


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order: the one place DNS is asked."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse (`UnsafeUrl`) a URL the guarded client would not request.

    Syntax, scheme, no credentials in the URL, a host, and every address it resolves to allowed.
    Passing says the URL is acceptable now; the client checks the addresses again when it connects.
    """
    parsed = _parse(url)
    _check_target(parsed, allow_private=allow_private)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        _allowed_addresses(host, port, allow_private=allow_private)
    except OSError as exc:
        raise UnsafeUrl(f"{host} does not resolve") from exc


def guarded_client(*, allow_private: bool, timeout: float, deadline: float | None = None) -> httpx.Client:
    """An httpx client that only talks to targets `check_url` allows, and never follows redirects.

    Every request is checked as `check_url` does before it is sent, and every connection resolves
    the host, checks each address, and dials a checked one: no second lookup between the check
    and the connection. TLS still verifies the certificate for the hostname (SNI and `Host` are
    the hostname, not the address). A refused request raises `UnsafeUrl` before any connection;
    a host that does not resolve raises `httpx.ConnectError`, like an unreachable one.

    `timeout` bounds each socket operation; `deadline` (a `time.monotonic()` value), if given,
    bounds all of them together: past it, the request in flight fails with a timeout and its
    connection is closed, however slowly the server keeps sending.
    """
    return httpx.Client(
        transport=_GuardedTransport(allow_private=allow_private, deadline=deadline),
        timeout=timeout,
        follow_redirects=False,
        # No proxies or .netrc from the environment: the request must go where it was checked.
        trust_env=False,
    )


@contextmanager
def stream_following_redirects(
    client: httpx.Client, url: str, *, allow_private: bool, max_redirects: int = MAX_REDIRECTS
) -> Iterator[httpx.Response]:
    """GET `url` with a `guarded_client`, following redirects one checked hop at a time.

    The client's transport checks each hop's URL before it is sent, and its addresses as it connects.
    Yields the final response with its body not yet read. `httpx.TooManyRedirects` past
    `max_redirects`; `UnsafeUrl` as soon as a hop is refused.
    """
    for _ in range(max_redirects + 1):
        response = client.send(client.build_request("GET", url), stream=True)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            try:
                yield response
            finally:
                response.close()
            return
        response.close()
        try:
            url = str(response.url.join(location))
        except httpx.InvalidURL as exc:
            raise UnsafeUrl(f"the server redirected to {location!r}, which is not a valid URL") from exc
    raise httpx.TooManyRedirects(f"more than {max_redirects} redirects", request=response.request)


# --- checks --------------------------------------------------------------------------------------


def _parse(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from exc


def _check_target(url: httpx.URL, *, allow_private: bool) -> None:
    """What can be refused without DNS: scheme, credentials, the host's spelling."""
    if not url.is_absolute_url or not url.raw_host:
        raise UnsafeUrl("the URL must be absolute, with a host (https://host/path)")
    if allow_private and url.scheme not in ("http", "https"):
        raise UnsafeUrl("the URL must use http or https")
    if not allow_private and url.scheme != "https":
        raise UnsafeUrl("the URL must use https")
    if url.userinfo:
        raise UnsafeUrl("the URL must not contain credentials (user:password@)")
    _check_host_form(url.raw_host.decode("ascii"))


def _check_host_form(host: str) -> None:
    if _NUMERIC_HOST.fullmatch(host) and not _is_ip_literal(host):
        raise UnsafeUrl(f"{host} is not a valid IP address: write IPv4 addresses as four decimal numbers")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _allowed_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve `host` and return its addresses if every one may be dialled; else `UnsafeUrl`.

    `OSError` (`socket.gaierror`) if it does not resolve.
    """
    _check_host_form(host)
    addresses = resolve(host, port)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} resolves to no address")
    if allow_private:
        return addresses
    for address in addresses:
        reason = _refusal(ipaddress.ip_address(address))
        if reason is not None:
            where = f"{host} is" if _is_ip_literal(host) else f"{host} resolves to {address},"
            raise UnsafeUrl(f"{where} {reason}")
    return addresses


def _refusal(ip: IPAddress) -> str | None:
    """Why `ip` may not be dialled when only public targets are allowed; None if it may."""
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = _refusal(embedded)
            return None if inner is None else f"an address wrapping {embedded}, {inner}"
        if ip in _NAT64_LOCAL:
            return "a local-use NAT64 address"
    for reason, applies in (
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("an unspecified address", ip.is_unspecified),
        ("a private address", any(ip in network for network in _PRIVATE)),
        ("a shared (carrier-grade NAT) address", isinstance(ip, IPv4Address) and ip in _SHARED),
        ("a reserved address", ip.is_reserved),
        ("a non-public address", ip.is_private or not ip.is_global),
    ):
        if applies:
            return reason
    return None


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        # Teredo is refused whole (2001::/32 is not global); its client address names the reason.
        return ip.teredo[1] if _refusal(ip.teredo[1]) is not None else None
    return None


# --- transport -----------------------------------------------------------------------------------


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, and connects to a checked one: the check is the dial."""

    def __init__(self, *, allow_private: bool, deadline: float | None) -> None:
        self._allow_private = allow_private
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = _allowed_addresses(host, port, allow_private=self._allow_private)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        error: Exception | None = None
        for address in addresses:
            try:
                if self._deadline is None:
                    return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
                left = _time_left(self._deadline, timeout, httpcore.ConnectTimeout)
                stream = self._inner.connect_tcp(address, port, left, local_address, socket_options)
                return _DeadlineStream(stream, self._deadline)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # addresses is never empty
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise UnsafeUrl("unix sockets are not allowed")


def _time_left(deadline: float, timeout: float | None, error: type[httpcore.TimeoutException]) -> float:
    """The wait allowed for one socket operation: `timeout`, cut short by `deadline`; `error` if
    the deadline has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the deadline for this request has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline: each waits at most until then.

    Past the deadline, the operation raises a timeout; httpcore closes a connection whose request
    failed, so the socket is closed, not left to the server.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _time_left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(self._deadline, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


# Most specific first: httpcore's errors as the httpx ones callers catch.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core_error, httpx_error in _ERRORS:
            if isinstance(exc, core_error):
                raise httpx_error(str(exc)) from exc
        raise


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _GuardedTransport(httpx.BaseTransport):
    """httpx's own transport, minus proxies, over a connection pool that dials through the guard.

    Built on httpx's public transport interface and httpcore's `network_backend`, rather than by
    swapping the private pool of `httpx.HTTPTransport`: if httpx renamed that attribute, the swap
    would silently fall back to an unguarded pool. The cost is the error mapping above.
    """

    def __init__(self, *, allow_private: bool, deadline: float | None) -> None:
        self._allow_private = allow_private
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=10,
            max_keepalive_connections=5,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(allow_private=allow_private, deadline=deadline),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _check_target(request.url, allow_private=self._allow_private)
        content = typing.cast(Iterable[bytes], request.stream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=content,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(typing.cast(Iterable[bytes], response.stream)),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
