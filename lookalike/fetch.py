"""Fetching a URL someone else gave us without letting it reach private networks.

Every hop (the URL, then each redirect) is resolved once, every resolved address is checked
with :mod:`lookalike.addresses`, and the connection goes to an address that passed: the name
is never resolved a second time, so DNS rebinding cannot slip a private address in between the
check and the connect. Only http and https are spoken; the body is capped in size and the
whole fetch in time: name resolution and every socket wait (connect, TLS handshake, status
line, each header, each piece of the body) get only what is left of one deadline, because a
socket timeout applies to each read and a server sending one byte at a time never trips it.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from lookalike.addresses import AddressRefused, IPAddress, check_addresses, resolve
from lookalike.wording import first_line

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_REDIRECTS = 5
USER_AGENT = "Lookalike/0.1 (reverse image search; fetching an image a user asked to search)"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK_BYTES = 64 * 1024
_RESOLVERS = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="lookalike-resolve")
_KEPT_IN_PATH = "/%:@!$&'()*+,;=[]"  # RFC 3986 reserved characters and the % of escapes


class FetchError(ValueError):
    """The URL gave no usable body; ``str(error)`` is a one-line reason for a person."""


class FetchRefused(FetchError):
    """The URL (or a redirect) names a scheme or an address Lookalike will not connect to."""


class ResponseTooLarge(FetchError):
    """The body is larger than the caller's limit."""


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # after redirects
    content: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


def fetch(
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    allowed: Iterable[IPAddress] = (),
) -> Fetched:
    """GET ``url`` following redirects, checking every hop's addresses before connecting.

    ``allowed`` lists non-public addresses that may be used anyway (a local test server).
    Raises :class:`FetchRefused`, :class:`ResponseTooLarge` or :class:`FetchError`.
    """
    deadline = time.monotonic() + timeout
    permitted = tuple(allowed)
    current = url
    for _ in range(max_redirects + 1):
        target = _target(current)
        try:
            addresses = _resolve_by(target.host, target.port, deadline)
            check_addresses(target.host, addresses, permitted)
        except AddressRefused as error:
            raise FetchRefused(str(error)) from None
        connection = _connect(target, addresses, deadline)
        try:
            response = _get(connection, target)
            if response.status in _REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"redirect {response.status} without a Location header")
                current = urljoin(current, location.strip())
                continue
            if response.status != 200:
                raise FetchError(f"the server answered {response.status} {response.reason}")
            content = _read_limited(response, max_bytes)
            return Fetched(current, content, response.getheader("Content-Type"))
        except (OSError, http.client.HTTPException) as error:
            raise FetchError(f"fetching {target.host} failed: {_describe(error)}") from None
        finally:
            connection.close()
    raise FetchError(f"more than {max_redirects} redirects")


def _resolve_by(host: str, port: int, deadline: float) -> list[IPAddress]:
    """``resolve`` in a small shared pool, given up at the deadline.

    getaddrinfo cannot be interrupted, and whoever runs a domain's name server decides how
    slowly it answers; a lookup still running after its fetch gave up holds only a pool thread.
    """
    lookup = _RESOLVERS.submit(resolve, host, port)
    try:
        return lookup.result(timeout=_remaining(deadline))
    except concurrent.futures.TimeoutError:
        lookup.cancel()
        raise FetchError(f"resolving {host} timed out") from None


def _target(url: str) -> _Target:
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise FetchRefused(f"not a valid URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = scheme or "no scheme"
        raise FetchRefused(f"only http and https URLs can be fetched, not {shown}")
    if not parts.hostname:
        raise FetchRefused("the URL has no host name")
    if port == 0:
        raise FetchRefused("not a valid URL: port 0")
    path = _request_path(parts.path or "/", parts.query)
    return _Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


def _request_path(path: str, query: str) -> str:
    """Path and query as a browser sends them: non-ASCII as UTF-8, spaces and controls
    percent-encoded, everything already encoded or reserved kept as it is."""
    try:
        encoded = quote(path, safe=_KEPT_IN_PATH)
        return encoded + (f"?{quote(query, safe=_KEPT_IN_PATH + '?')}" if query else "")
    except UnicodeEncodeError:
        raise FetchRefused("not a valid URL: it contains a lone surrogate") from None


class _DeadlineMixin:
    """Before each send or receive, the socket's timeout becomes what is left of ``deadline``."""

    deadline: float

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self.settimeout(_remaining(self.deadline))  # type: ignore[attr-defined]
        return super().recv_into(*args, **kwargs)  # type: ignore[misc]

    def sendall(self, *args: Any, **kwargs: Any) -> None:
        self.settimeout(_remaining(self.deadline))  # type: ignore[attr-defined]
        super().sendall(*args, **kwargs)  # type: ignore[misc]


class _DeadlineSocket(_DeadlineMixin, socket.socket):
    pass


class _DeadlineSSLSocket(_DeadlineMixin, ssl.SSLSocket):
    pass


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to an address already checked; the Host header keeps the URL's host name."""

    def __init__(self, host: str, port: int, address: IPAddress, deadline: float) -> None:
        super().__init__(host, port)
        self.address = address
        self.deadline = deadline

    def connect(self) -> None:
        self.sock = _open_socket(self.address, self.port, self.deadline)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """HTTPS to an address already checked; certificate and SNI use the URL's host name."""

    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        raw = _open_socket(self.address, self.port, self.deadline)
        tls = ssl.create_default_context()
        tls.sslsocket_class = _DeadlineSSLSocket
        try:
            self.sock = tls.wrap_socket(
                raw, server_hostname=self.host, do_handshake_on_connect=False
            )
            self.sock.deadline = self.deadline
            self.sock.settimeout(_remaining(self.deadline))  # bounds the whole handshake
            self.sock.do_handshake()
        except BaseException:
            raw.close()
            raise


def _open_socket(address: IPAddress, port: int, deadline: float) -> _DeadlineSocket:
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = _DeadlineSocket(family, socket.SOCK_STREAM)
    sock.deadline = deadline
    try:
        sock.settimeout(_remaining(deadline))
        sock.connect((str(address), port))
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(
    target: _Target, addresses: list[IPAddress], deadline: float
) -> http.client.HTTPConnection:
    """A connection to the first checked address that answers."""
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    failure: OSError | None = None
    for address in addresses:
        connection = kind(target.host, target.port, address, deadline)
        try:
            connection.connect()
            return connection
        except OSError as error:
            connection.close()
            failure = error
    raise FetchError(f"cannot connect to {target.host}: {_describe(failure)}")


def _get(connection: http.client.HTTPConnection, target: _Target) -> http.client.HTTPResponse:
    connection.request(
        "GET",
        target.path,
        headers={
            "User-Agent": USER_AGENT,
            "Accept": "image/*",
            "Accept-Encoding": "identity",
        },
    )
    return connection.getresponse()


def _read_limited(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The whole body, refusing it as soon as it is known to pass ``max_bytes``."""
    if response.length is not None and response.length > max_bytes:
        raise ResponseTooLarge(f"the image is larger than {_megabytes(max_bytes)}")
    declared = response.length
    body = bytearray()
    while chunk := response.read(_CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise ResponseTooLarge(f"the image is larger than {_megabytes(max_bytes)}")
    if declared is not None and len(body) < declared:
        raise FetchError(f"the server sent {len(body)} of the {declared} bytes it announced")
    return bytes(body)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("timed out")
    return left


def _megabytes(count: int) -> str:
    return f"{count / 1024 / 1024:g} MB"


def _describe(error: BaseException | None) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return first_line(error) if error else "no address to connect to"
