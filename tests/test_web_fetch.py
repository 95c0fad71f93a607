"""lookalike.fetch: user-given URLs are fetched only from checked public addresses.

The refused-address tests listen on 127.0.0.x and prove no connection ever arrives there;
nothing here connects outside this machine (private and link-local literals are refused
before any connect is attempted, which the recorder tests show is the order of things).
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from lookalike.addresses import is_public
from lookalike.fetch import FetchError, FetchRefused, ResponseTooLarge, fetch
from tests.conftest import StubHosts
from tests.netguard import netguard
from tests.web_support import AcceptRecorder, ImageServer, Route

LOOPBACK = [ipaddress.ip_address("127.0.0.1")]
NOT_PUBLIC = "refused: not a public address"


def test_fetches_from_an_allowed_local_server_with_the_url_host_in_host_header() -> None:
    with ImageServer(
        {"/cat.jpg": Route(body=b"JPEGDATA", headers={"Content-Type": "image/jpeg"})}
    ) as server:
        fetched = fetch(server.url("/cat.jpg"), allowed=LOOPBACK)
    assert (fetched.content, fetched.content_type) == (b"JPEGDATA", "image/jpeg")
    assert server.requests == [("/cat.jpg", f"127.0.0.1:{server.port}")]


def test_follows_redirects_rechecking_each_hop() -> None:
    routes = {
        "/a": Route(302, headers={"Location": "/b?x=1"}),
        "/b?x=1": Route(301, headers={"Location": "/final.png"}),
        "/final.png": Route(body=b"PNG"),
    }
    with ImageServer(routes) as server:
        fetched = fetch(server.url("/a"), allowed=LOOPBACK)
    assert fetched.content == b"PNG" and fetched.url == server.url("/final.png")


@pytest.mark.parametrize(
    "spelling", ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "localhost"]
)
def test_loopback_in_any_spelling_is_refused_before_connecting(spelling: str) -> None:
    with (
        AcceptRecorder("127.0.0.1") as recorder,
        pytest.raises(FetchRefused, match=NOT_PUBLIC),
    ):
        fetch(f"http://{spelling}:{recorder.port}/image.jpg")
    assert recorder.accepted == 0


def test_a_redirect_to_a_refused_address_is_never_followed() -> None:
    with AcceptRecorder("127.0.0.3") as forbidden:
        routes = {"/start.jpg": Route(302, headers={"Location": forbidden.url()})}
        with (
            ImageServer(routes) as server,
            pytest.raises(FetchRefused, match=NOT_PUBLIC),
        ):
            fetch(server.url("/start.jpg"), allowed=LOOPBACK)
    assert server.requests == [("/start.jpg", f"127.0.0.1:{server.port}")]
    assert forbidden.accepted == 0


def test_the_recorder_does_see_connections_that_are_allowed() -> None:
    """The control for the tests above: a permitted fetch does reach the recorder."""
    with AcceptRecorder("127.0.0.2") as recorder, pytest.raises(FetchError):
        fetch(recorder.url(), allowed=[ipaddress.ip_address("127.0.0.2")])
    assert recorder.accepted == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/x.jpg",
        "http://192.168.1.1/x.jpg",
        "http://172.16.0.1/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/x.jpg",
        "http://224.0.0.1/x.jpg",
        "http://0.0.0.0/x.jpg",
        "http://[::1]/x.jpg",
        "http://[fe80::1]/x.jpg",
        "http://[::ffff:127.0.0.1]/x.jpg",
    ],
)
def test_private_link_local_cgnat_multicast_and_unspecified_are_refused(url: str) -> None:
    with pytest.raises(FetchRefused, match=NOT_PUBLIC):
        fetch(url, timeout=1)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "javascript:alert(1)", "gopher://x/", "//x/"],
)
def test_only_http_and_https_are_fetched(url: str) -> None:
    with pytest.raises(FetchRefused, match="only http and https"):
        fetch(url)


def test_bodies_over_the_limit_are_refused_whether_declared_or_streamed() -> None:
    routes = {
        "/declared": Route(body=b"x" * 2000),
        "/streamed": Route(body=b"x" * 2000, send_length=False),
        "/fits": Route(body=b"x" * 1000, send_length=False),
    }
    with ImageServer(routes) as server:
        for path in ("/declared", "/streamed"):
            with pytest.raises(ResponseTooLarge, match="larger than"):
                fetch(server.url(path), max_bytes=1000, allowed=LOOPBACK)
        assert fetch(server.url("/fits"), max_bytes=1000, allowed=LOOPBACK).content == b"x" * 1000


def test_a_server_that_never_answers_times_out() -> None:
    with (
        AcceptRecorder("127.0.0.1", hold=True) as silent,
        pytest.raises(FetchError, match="timed out"),
    ):
        fetch(silent.url(), timeout=0.5, allowed=LOOPBACK)


DRIPPED_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Slow: " + b"a" * 60
DRIPPED_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 60


@pytest.mark.parametrize("drip", [DRIPPED_HEADERS, DRIPPED_BODY], ids=["headers", "body"])
def test_a_server_dripping_bytes_is_cut_off_at_the_deadline(drip: bytes) -> None:
    """A byte every 0.5 s never trips a per-read timeout; the whole fetch has 2 s."""
    with AcceptRecorder("127.0.0.1", drip=drip, interval=0.5) as dripping:
        started = time.monotonic()
        with pytest.raises(FetchError, match="timed out"):
            fetch(dripping.url(), timeout=2, allowed=LOOPBACK)
        elapsed = time.monotonic() - started
    assert 1.9 < elapsed < 3.5


def test_a_name_server_that_answers_slowly_is_given_up_at_the_deadline() -> None:
    """Whoever runs a domain's name server decides how long its lookups take; the answer
    (a public address) arrives after the deadline and is never connected to."""
    # A public address (example.com's): were it connected to, the test guard would refuse.
    netguard.stub({"slow.test": [["93.184.215.14"]]}, slow={"slow.test": 4})
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch("http://slow.test/x.jpg", timeout=1)
    assert time.monotonic() - started < 2


def test_a_body_cut_short_of_its_content_length_is_an_error() -> None:
    with (
        AcceptRecorder("127.0.0.1", drip=DRIPPED_BODY, interval=0.001) as cut,
        pytest.raises(FetchError, match="sent 60 of the 100000 bytes it announced"),
    ):
        fetch(cut.url(), allowed=LOOPBACK)


@pytest.fixture
def tls_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context for ``localhost``, its self-signed certificate trusted by clients."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


LOCALHOST = [*LOOPBACK, ipaddress.ip_address("::1")]


def test_https_is_fetched_from_the_checked_address_with_the_certificate_verified(
    tls_context: ssl.SSLContext,
) -> None:
    server = ImageServer({"/cat.jpg": Route(body=b"TLS-JPEG")})
    server.server.socket = tls_context.wrap_socket(server.server.socket, server_side=True)
    with server:
        url = f"https://localhost:{server.port}/cat.jpg"
        assert fetch(url, allowed=LOCALHOST).content == b"TLS-JPEG"
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(url.replace("localhost", "127.0.0.1"), allowed=LOCALHOST)  # not its name


def test_a_tls_server_dripping_bytes_is_cut_off_at_the_deadline(
    tls_context: ssl.SSLContext,
) -> None:
    dripping = AcceptRecorder("127.0.0.1", drip=DRIPPED_HEADERS)
    dripping.listener = tls_context.wrap_socket(dripping.listener, server_side=True)
    with dripping:
        started = time.monotonic()
        with pytest.raises(FetchError, match="timed out"):
            fetch(f"https://localhost:{dripping.port}/", timeout=2, allowed=LOCALHOST)
        elapsed = time.monotonic() - started
    assert 1.9 < elapsed < 3.5


def test_a_tls_handshake_that_never_ends_is_cut_off_at_the_deadline() -> None:
    with AcceptRecorder("127.0.0.1", drip=b"\x16\x03\x01" + b"\x00" * 60) as dripping:
        started = time.monotonic()
        with pytest.raises(FetchError, match="timed out"):
            fetch(dripping.url().replace("http:", "https:"), timeout=2, allowed=LOOPBACK)
        elapsed = time.monotonic() - started
    assert 1.9 < elapsed < 3.5


def test_errors_and_redirect_loops_are_reported() -> None:
    routes = {"/loop": Route(302, headers={"Location": "/loop"}), "/gone": Route(404)}
    with ImageServer(routes) as server:
        with pytest.raises(FetchError, match="answered 404"):
            fetch(server.url("/gone"), allowed=LOOPBACK)
        with pytest.raises(FetchError, match="more than 3 redirects"):
            fetch(server.url("/loop"), max_redirects=3, allowed=LOOPBACK)
    assert len(server.requests) == 1 + 4


EMBEDDED_LOOPBACK = [
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (inverted bits)
    "2001:0:7f00:1::1",  # Teredo, server 127.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::7f00:1",  # local-use NAT64: where the IPv4 sits depends on a prefix we cannot know
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:127.0.0.1",  # IPv4-mapped
]


@pytest.mark.parametrize("address", EMBEDDED_LOOPBACK)
def test_ipv6_forms_embedding_a_non_public_ipv4_are_refused(
    stub_hosts: StubHosts, address: str
) -> None:
    """``rebind.test`` resolves (through the stub) to the IPv6 form: were it allowed, the
    connect would reach the test connection guard, which fails the test."""
    stub_hosts({"rebind.test": [[address]]})
    with pytest.raises(FetchRefused, match=NOT_PUBLIC):
        fetch("http://rebind.test:8080/x.jpg", timeout=2)


@pytest.mark.parametrize("host", ["b\u00fccher.test", "xn--bcher-kva.test"])
def test_idna_and_punycode_names_are_checked_by_what_they_resolve_to(
    stub_hosts: StubHosts, host: str
) -> None:
    stub_hosts({host: [["127.0.0.1"]]})
    with pytest.raises(FetchRefused, match=NOT_PUBLIC):
        fetch(f"http://{host}/x.jpg", timeout=2)


@pytest.mark.parametrize("address", ["2002:808:808::1", "64:ff9b::808:808", "2606:4700::1111"])
def test_ipv6_forms_embedding_a_public_ipv4_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_refusals_name_the_host_but_never_what_it_resolves_to(
    stub_hosts: StubHosts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub_hosts({"vm": [["127.0.0.1"]]})
    with caplog.at_level(logging.INFO, "lookalike"), pytest.raises(FetchRefused) as refused:
        fetch("http://vm/x.jpg")
    assert str(refused.value) == "refused: not a public address (host 'vm')"
    assert "127.0.0.1 for host 'vm'" in caplog.text  # kept in the server's log only


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/caf\u00e9 cr\u00e8me.jpg", "/caf%C3%A9%20cr%C3%A8me.jpg"),
        ("/a%20b.jpg?size=big&q=\u00e9", "/a%20b.jpg?size=big&q=%C3%A9"),
        ("/nul\x00.jpg", "/nul%00.jpg"),
    ],
)
def test_non_ascii_spaces_and_controls_in_paths_are_sent_percent_encoded(
    path: str, sent: str
) -> None:
    with ImageServer({sent: Route(body=b"IMG")}) as server:
        assert fetch(server.url(path), allowed=LOOPBACK).content == b"IMG"
    assert server.requests == [(sent, f"127.0.0.1:{server.port}")]


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("http://127.0.0.1/\ud800.jpg", "lone surrogate"),
        ("http://\ud800.example/x.jpg", "cannot resolve host"),
        ("http://127.0.0.1:0/x.jpg", "port 0"),
        ("http://public.example@127.0.0.1/x.jpg", NOT_PUBLIC),  # userinfo is not the host
        ("http://[::]/x.jpg", NOT_PUBLIC),
        ("http://[fe80::1%25eth0]/x.jpg", "cannot resolve host"),  # zone ids name no public host
        ("http://[fe80::1%eth0]/x.jpg", "cannot resolve host|" + NOT_PUBLIC),
    ],
)
def test_hostile_urls_are_refused_before_connecting(url: str, refusal: str) -> None:
    with pytest.raises(FetchRefused, match=refusal):
        fetch(url, timeout=2)


@pytest.mark.parametrize(
    ("location", "refusal"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.org/x.jpg", "only http and https"),
        ("data:image/png;base64,iVBORw0KGgo=", "only http and https"),
        ("/\t/127.0.0.3/x.jpg", NOT_PUBLIC),  # TAB is dropped, as browsers do: //127.0.0.3
        ("http://127.0.0.\r\n\t3/x.jpg", NOT_PUBLIC),  # a folded header line, joined
    ],
)
def test_redirects_to_other_schemes_or_disguised_hosts_are_refused(
    location: str, refusal: str
) -> None:
    with (
        ImageServer({"/start.jpg": Route(302, headers={"Location": location})}) as server,
        pytest.raises(FetchRefused, match=refusal),
    ):
        fetch(server.url("/start.jpg"), allowed=LOOPBACK)
    assert len(server.requests) == 1


def test_a_huge_location_header_is_an_error_not_a_crash() -> None:
    routes = {"/start.jpg": Route(302, headers={"Location": "/" + "a" * 70_000})}
    with ImageServer(routes) as server, pytest.raises(FetchError, match="header line"):
        fetch(server.url("/start.jpg"), allowed=LOOPBACK)


def test_a_redirect_loop_between_two_hosts_ends_at_the_redirect_limit() -> None:
    with ImageServer({}) as first, ImageServer({}) as second:
        first.routes["/ping"] = Route(302, headers={"Location": second.url("/pong")})
        second.routes["/pong"] = Route(302, headers={"Location": first.url("/ping")})
        with pytest.raises(FetchError, match="more than 3 redirects"):
            fetch(first.url("/ping"), max_redirects=3, allowed=LOOPBACK)
    assert len(first.requests) + len(second.requests) == 4
