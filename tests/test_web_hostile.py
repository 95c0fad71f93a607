"""Hostile and unlucky requests against a real ``lookalike serve``: status, time and memory.

Each case runs against the server a user starts (waitress, real sockets, real PostgreSQL), so
what waitress buffers, how many connections it holds and how fast it answers are all measured.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.images import noisy_jpeg
from tests.served import served_site

# The form is posted without a CSRF token: CSRF is tested elsewhere, uploads are tested here.
NO_CSRF = {"LOOKALIKE_WTF_CSRF_ENABLED": "false"}


@pytest.mark.parametrize("size", [(1600, 1200), (2048, 1536), (3000, 2000)])
def test_ordinary_noisy_photos_upload_on_every_endpoint(
    cli_env: dict[str, str], size: tuple[int, int]
) -> None:
    photo = noisy_jpeg(7, size)
    files = {"image": ("photo.jpg", photo, "image/jpeg")}
    with served_site(cli_env, extra_env=NO_CSRF) as site:
        search = requests.post(f"{site.url}/api/search", files=files, timeout=60)
        check = requests.post(f"{site.url}/api/check", files=files, timeout=60)
        form = requests.post(f"{site.url}/search", files=files, allow_redirects=False, timeout=60)
    assert len(photo) > 1_000_000
    assert search.status_code == 200, search.text
    assert search.json()["query"]["width"] == size[0]
    assert check.status_code == 200 and check.json()["flagged"] is False
    assert form.status_code == 303 and "/search?dhash=" in form.headers["Location"]


def test_text_fields_stay_capped_while_files_are_not(cli_env: dict[str, str]) -> None:
    long_url = "http://a.test/" + "x" * 100_000
    with served_site(cli_env, extra_env=NO_CSRF) as site:
        urlencoded = requests.post(f"{site.url}/search", data={"url": long_url}, timeout=30)
        multipart = requests.post(
            f"{site.url}/api/search", files={"url": (None, long_url)}, timeout=30
        )
    assert (urlencoded.status_code, multipart.status_code) == (413, 413)


def _idle_connections(url: str, count: int) -> list[socket.socket]:
    """``count`` connections that sent half a request line and then nothing (slowloris)."""
    host, port = url.removeprefix("http://").split(":")
    opened = []
    for _ in range(count):
        connection = socket.create_connection((host, int(port)), timeout=10)
        connection.sendall(b"GET / HTTP/1.1\r\nHost: slow")
        opened.append(connection)
    return opened


def test_idle_connections_do_not_starve_real_clients(cli_env: dict[str, str]) -> None:
    with served_site(cli_env) as site:
        idle = _idle_connections(site.url, 150)
        try:
            started = time.monotonic()
            answer = requests.get(f"{site.url}/api/stats", timeout=10)
            waited = time.monotonic() - started
        finally:
            for connection in idle:
                connection.close()
    assert answer.status_code == 200 and waited < 3


def test_silent_connections_are_closed_after_the_channel_timeout(cli_env: dict[str, str]) -> None:
    with served_site(cli_env, extra_env={"LOOKALIKE_SERVER_CHANNEL_TIMEOUT": "2"}) as site:
        idle = _idle_connections(site.url, 20)
        started = time.monotonic()
        closed = [connection.recv(100) for connection in idle]  # b"": the server hung up
        waited = time.monotonic() - started
        for connection in idle:
            connection.close()
    assert closed == [b""] * 20 and waited < 6


def _send_until_answered(url: str, head: bytes, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` then ``chunks`` until the server answers; (status line, body bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head)
        for chunk in chunks:
            if select.select([connection], [], [], 0)[0]:
                break
            try:
                connection.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        return connection.makefile("rb").readline(), sent


def _megabytes(count: int, framing: Callable[[bytes], bytes] = bytes) -> Iterator[bytes]:
    block = b"x" * 1_000_000
    return (framing(block) for _ in range(count))


def test_a_body_declared_too_large_is_refused_before_it_is_read(cli_env: dict[str, str]) -> None:
    head = (
        b"POST /api/search HTTP/1.1\r\nHost: site\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: 300000000\r\n\r\n"
    )
    with served_site(cli_env) as site:
        started = time.monotonic()
        status, sent = _send_until_answered(site.url, head, _megabytes(300))
        waited = time.monotonic() - started
    assert status.startswith(b"HTTP/1.1 413") and waited < 5 and sent < 5_000_000


def test_a_chunked_body_is_cut_off_at_the_limit(cli_env: dict[str, str]) -> None:
    head = (
        b"POST /api/search HTTP/1.1\r\nHost: site\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunked = lambda block: b"%x\r\n%s\r\n" % (len(block), block)  # noqa: E731
    with served_site(cli_env) as site:
        peak_before = site.peak_rss_mb
        started = time.monotonic()
        status, sent = _send_until_answered(site.url, head, _megabytes(300, chunked))
        waited = time.monotonic() - started
        peak_rise = site.peak_rss_mb - peak_before
    # 20 MB is the limit; the socket buffers let a few more megabytes out before the 413.
    assert status.startswith(b"HTTP/1.1 413") and sent < 30_000_000
    assert waited < 20 and peak_rise < 100


def test_a_json_body_is_capped_like_form_fields(cli_env: dict[str, str]) -> None:
    """20 MB of ``[{},{},…]`` is inside MAX_CONTENT_LENGTH but took a gigabyte and 16 s to parse."""
    objects = "[" + ",".join(["{}"] * 6_900_000) + "]"
    json_type = {"Content-Type": "application/json"}
    with served_site(cli_env) as site:
        peak_before = site.peak_rss_mb
        started = time.monotonic()
        refused = requests.post(f"{site.url}/api/search", data=objects, headers=json_type)
        waited = time.monotonic() - started
        peak_rise = site.peak_rss_mb - peak_before
    assert refused.status_code == 413 and waited < 5 and peak_rise < 100


def test_stalled_uploads_are_buffered_on_disk_not_in_memory(cli_env: dict[str, str]) -> None:
    """300 connections each stop 400 KB into a 1 MB upload: waitress kept 512 KB a connection
    in memory by default, 64 KB here (the rest is in a temp file until the body completes)."""
    head = (
        b"POST /api/search HTTP/1.1\r\nHost: site\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: 1000000\r\n\r\n"
    )
    with served_site(cli_env) as site:
        host, port = site.url.removeprefix("http://").split(":")
        peak_before = site.peak_rss_mb
        stalled = []
        for _ in range(300):
            connection = socket.create_connection((host, int(port)), timeout=10)
            connection.sendall(head + b"x" * 400_000)
            stalled.append(connection)
        answer = requests.get(f"{site.url}/api/stats", timeout=10)
        peak_rise = site.peak_rss_mb - peak_before
        for connection in stalled:
            connection.close()
    assert answer.status_code == 200 and peak_rise < 60


def test_request_headers_over_64_kb_are_431(cli_env: dict[str, str]) -> None:
    with served_site(cli_env) as site:
        refused = requests.get(f"{site.url}/", headers={"X-Padding": "x" * 100_000}, timeout=10)
        served = requests.get(f"{site.url}/", headers={"X-Padding": "x" * 30_000}, timeout=10)
    assert (refused.status_code, served.status_code) == (431, 200)
