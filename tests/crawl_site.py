"""Local web sites for crawler tests, served on 127.0.0.1 by a thread of the test process.

A ``Site`` maps paths to responses: fixed ``Resource``s or functions of the request handler
(for hostile behaviour: dripping bytes, endless calendars, headers or bodies, compression
bombs). Every request is logged, so tests can check what the crawler fetched, and how often.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import psycopg

from benchmarks.peak_memory import status_kb
from lookalike.store.db import apply_migrations, scratch_database
from tests.images import encode, photo


@dataclass
class Resource:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[BaseHTTPRequestHandler], None]


def html(body: str, title: str = "page") -> Resource:
    page = f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
    return Resource(page.encode())


def jpeg(seed: int, size: tuple[int, int] = (320, 240)) -> Resource:
    return Resource(encode(photo(seed, size), "JPEG", quality=85), content_type="image/jpeg")


def png(seed: int, size: tuple[int, int] = (200, 150)) -> Resource:
    return Resource(encode(photo(seed, size), "PNG"), content_type="image/png")


def redirect(location: str, status: int = 302) -> Resource:
    return Resource(status=status, headers={"Location": location})


class Site:
    """An HTTP server on 127.0.0.1 with a free port, serving ``routes``."""

    def __init__(
        self,
        routes: dict[str, Resource | Handler] | None = None,
        delay: float = 0.0,
        host: str = "127.0.0.1",
    ):
        self.routes: dict[str, Resource | Handler] = dict(routes or {})
        self.delay = delay
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests it was answering at once
        self.user_agents: set[str] = set()
        self.accepts: dict[str, str] = {}  # path → the Accept header it was asked with
        site = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                query = urlsplit(self.path).query
                with site.lock:
                    site.hits[path + (f"?{query}" if query else "")] += 1
                    site.user_agents.add(self.headers.get("User-Agent", ""))
                    site.accepts[path] = self.headers.get("Accept", "")
                    site.in_flight += 1
                    site.max_in_flight = max(site.max_in_flight, site.in_flight)
                try:
                    if site.delay:
                        time.sleep(site.delay)
                    route = site.routes.get(path)
                    if route is None:
                        route = Resource(b"not found", status=404, content_type="text/plain")
                    if callable(route):
                        route(self)
                    else:
                        send(self, route)
                finally:
                    with site.lock:
                        site.in_flight -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://{host}:{self.port}"  # host: the name crawlers use for it
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connection bursts, and each dropped SYN costs the client
    # a 1 s retransmission: the crawl would measure the test server, not itself.
    request_queue_size = 128

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a crawler hanging up is fine
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def send(handler: BaseHTTPRequestHandler, resource: Resource) -> None:
    handler.send_response(resource.status)
    handler.send_header("Content-Type", resource.content_type)
    handler.send_header("Content-Length", str(len(resource.body)))
    for name, value in resource.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(resource.body)


def drip(handler: BaseHTTPRequestHandler) -> None:
    """A server that sends one byte a second, forever (until the client gives up)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    try:
        for _ in range(60):
            handler.wfile.write(b"<")
            handler.wfile.flush()
            time.sleep(1)
    except OSError:
        pass


MIB = 1024 * 1024
ENDLESS_SECONDS = 60  # how long an "endless" answer goes on if the client never gives up


def gzip_bomb(inflated_mib: int) -> Resource:
    """A page that inflates to ``inflated_mib`` MiB of zeros: gzip members of 1 MiB, ~1 KB each."""
    member = gzip.compress(bytes(MIB), 9)
    return Resource(member * inflated_mib, headers={"Content-Encoding": "gzip"})


def deflate_bomb(inflated_mib: int) -> Resource:
    """One zlib stream of ``inflated_mib`` MiB of zeros; fully flushed blocks repeat exactly."""
    compressor = zlib.compressobj(9)
    first = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = first + again * (inflated_mib - 1) + compressor.flush()
    return Resource(body, headers={"Content-Encoding": "deflate"})


def _endless(handler: BaseHTTPRequestHandler, head: bytes, piece: bytes) -> None:
    """Send ``head``, then ``piece`` again and again until the client hangs up."""
    deadline = time.monotonic() + ENDLESS_SECONDS
    try:
        handler.wfile.write(head)
        while time.monotonic() < deadline:
            handler.wfile.write(piece)
    except OSError:
        pass
    handler.close_connection = True


def endless_headers(handler: BaseHTTPRequestHandler) -> None:
    """A status line and then headers, short ones, without end."""
    _endless(handler, b"HTTP/1.1 200 OK\r\n", b"X-Flood: never ending\r\n" * 4096)


def endless_continues(handler: BaseHTTPRequestHandler) -> None:
    """Interim ``100 Continue`` heads, one after another, and never the response."""
    _endless(handler, b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 1024)


def endless_chunks(handler: BaseHTTPRequestHandler) -> None:
    """A chunked HTML body that never ends."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"<p>" + b"x" * 65533
    _endless(handler, head, b"%x\r\n%s\r\n" % (len(chunk), chunk))


def calendar(handler: BaseHTTPRequestHandler) -> None:
    """An endless calendar: every month links to the next one."""
    query = urlsplit(handler.path).query
    month = int(query.split("=")[1]) if query.startswith("m=") else 0
    send(handler, html(f'<a href="/calendar?m={month + 1}">next month</a>', f"month {month}"))


def linked_routes(pages: int, images: int) -> dict[str, Resource | Handler]:
    """Pages linking to each other, each showing 3 images shared with other pages."""
    routes: dict[str, Resource | Handler] = {}
    for page in range(pages):
        links = "".join(f'<a href="/p{(page * 7 + k) % pages}">p</a>' for k in (1, 2, 3))
        shown = "".join(
            f'<img src="/i{(page * 3 + k) % images}.jpg" alt="{page}-{k}">' for k in range(3)
        )
        routes[f"/p{page}"] = html(links + shown, f"page {page}")
    routes |= {f"/i{n}.jpg": jpeg(n, (160, 120)) for n in range(images)}
    return routes


def snapshot(url: str) -> dict[str, set[tuple[object, ...]]]:
    """Every stored fact, by natural keys (ids and timestamps differ between crawls)."""
    queries = {
        "images": "SELECT sha256, dhash, phash, width, height, format FROM images",
        "pages": "SELECT url, title FROM pages",
        "sightings": "SELECT sha256, page_url, image_url, alt_text FROM image_sightings",
        "thumbnails": "SELECT i.sha256 FROM thumbnails t JOIN images i ON i.id = t.image_id",
    }
    facts = {}
    with psycopg.connect(url) as conn:
        for name, query in queries.items():
            rows = conn.execute(query).fetchall()
            facts[name] = set(rows)
            assert len(facts[name]) == len(rows), f"duplicate {name}"
    return facts


def progress(url: str) -> tuple[int, int]:
    """(done, pending) requests of the crawl, (0, 0) before it has any."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(done_at), count(*) - count(done_at) FROM crawl_requests"
        ).fetchone()
    return row if row else (0, 0)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def reference_database(server_url: str) -> Iterator[str]:
    """A second fresh database, for an uninterrupted crawl to compare with."""
    with scratch_database(server_url, "lookalike_test_reference") as url:
        apply_migrations(url)
        yield url


def crawl_command(*args: str) -> list[str]:
    return plain_crawl_command(*FAST_SETTINGS, *args)


def plain_crawl_command(*args: str) -> list[str]:
    """``lookalike crawl`` with its own defaults: throttled, and quiet on the terminal."""
    return [sys.executable, "-m", "lookalike", "crawl", *args]


# Throttling off and short timeouts: tests crawl small local sites and must stay fast.
FAST_SETTINGS = (
    "--no-throttle",
    "-s", "DOWNLOAD_TIMEOUT=3",
    "-s", "RETRY_TIMES=0",
    "-s", "LOOKALIKE_FLUSH_SECONDS=0.2",
    "-s", "LOOKALIKE_PROGRESS_SECONDS=1",
    "--log-level", "INFO",  # on stderr, where tests look for what the crawl said
)  # fmt: skip


def run_crawl(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        crawl_command(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@dataclass
class MeasuredCrawl:
    result: subprocess.CompletedProcess[str]
    peak_rss_mb: float  # the crawl process's VmHWM, last read while it ran
    seconds: float


def measured_crawl(env: dict[str, str], *args: str, timeout: float = 60) -> MeasuredCrawl:
    """``run_crawl`` that also watches the crawl's peak resident memory in /proc."""
    command = crawl_command(*args)
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak_kib = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak_kib
        while not done.wait(0.05):
            try:
                peak_kib = max(peak_kib, status_kb("VmHWM", process.pid))
            except (OSError, LookupError):  # exited: a zombie has no memory figures
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        done.set()
        process.kill()
        watcher.join()
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    return MeasuredCrawl(result, peak_kib / 1024, time.monotonic() - started)


def crawl_reference(env: dict[str, str], reference_url: str, *args: str) -> None:
    """An uninterrupted crawl into ``reference_url``: the rows a disturbed crawl must equal."""
    result = run_crawl({**env, "DATABASE_URL": reference_url}, *args)
    assert result.returncode == 0, result.stderr[-3000:]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
