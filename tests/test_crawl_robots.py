"""robots.txt as RFC 9309 says: unreachable (refused, no answer, dropped) or 5xx means
"disallow everything"; 4xx means "no rules", whatever the error page's body says."""

from __future__ import annotations

import socket
import time
from http.server import BaseHTTPRequestHandler

import psycopg
import pytest

from tests.crawl_site import Handler, Resource, Site, html, jpeg, run_crawl

DISALLOW_ALL = b"User-agent: *\nDisallow: /\n"
TIMEOUT = 1  # seconds, the crawl's DOWNLOAD_TIMEOUT in these tests


def _silent(handler: BaseHTTPRequestHandler) -> None:
    """Reads the request and answers nothing until the crawler has given up."""
    time.sleep(TIMEOUT + 1)


def _hang_up(handler: BaseHTTPRequestHandler) -> None:
    """Closes the connection without a word."""
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


def _routes(robots: Resource | Handler) -> dict[str, Resource | Handler]:
    return {"/robots.txt": robots, "/": html('<img src="/a.jpg">'), "/a.jpg": jpeg(1)}


def _crawl(env: dict[str, str], url: str) -> dict[str, int]:
    result = run_crawl(env, url, "-s", f"DOWNLOAD_TIMEOUT={TIMEOUT}")
    assert result.returncode == 0, result.stderr[-3000:]
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        (errors,) = conn.execute("SELECT errors FROM crawls").fetchone()
        assert conn.execute("SELECT count(*) FROM images").fetchone() == (0,)
    return errors


@pytest.mark.parametrize(
    "robots",
    [
        Resource(b"down", status=503, content_type="text/plain"),
        Resource(b"oops", status=500, content_type="text/plain"),
        _silent,
        _hang_up,
    ],
    ids=["http 503", "http 500", "timeout", "connection dropped"],
)
def test_unavailable_robots_txt_means_disallow_all(
    robots: Resource | Handler, cli_env: dict[str, str]
) -> None:
    with Site(_routes(robots)) as served:
        errors = _crawl(cli_env, served.url("/"))
        assert set(served.hits) == {"/robots.txt"}  # not even the seed page
    assert errors == {"robots.txt unavailable": 1}


def test_refused_robots_txt_means_disallow_all(cli_env: dict[str, str]) -> None:
    # A port nobody listens on: allowed, the seed would fail as "connection refused" instead.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        errors = _crawl(cli_env, f"http://127.0.0.1:{unused.getsockname()[1]}/")
    assert errors == {"robots.txt unavailable": 1}


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_robots_txt_client_error_means_no_rules(status: int, cli_env: dict[str, str]) -> None:
    robots = Resource(DISALLOW_ALL, status=status, content_type="text/plain")
    with Site(_routes(robots)) as served:
        result = run_crawl(cli_env, served.url("/"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert set(served.hits) == {"/robots.txt", "/", "/a.jpg"}
    with psycopg.connect(cli_env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT pages, new_images, errors FROM crawls").fetchone() == (
            1,
            1,
            {},
        )
