"""Helpers for the site's tests: apps on fresh databases, and local servers to fetch from.

Every server here listens on 127.0.0.x only; nothing in the tests reaches another machine.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import waitress.server
from flask import Flask
from psycopg import conninfo

from lookalike.fingerprint import Fingerprint, fingerprint
from lookalike.store import Sighting, Store
from searchweb import create_app
from searchweb.extensions import close_store
from tests.images import encode, photo

# Generous limits: tests that are not about rate limiting must never hit one.
TEST_CONFIG: dict[str, object] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret",
    "SEARCH_RATE_LIMIT": "10000 per minute",
    "RATELIMIT_DEFAULT": "10000 per minute",
}


@contextmanager
def running_app(database_url: str, **config: object) -> Iterator[Flask]:
    """The site on ``database_url``; its connection pool is closed afterwards."""
    app = create_app({**TEST_CONFIG, "DATABASE_URL": database_url, **config})
    try:
        yield app
    finally:
        close_store(app)


def jpeg(seed: int, size: tuple[int, int] = (640, 480), **options: object) -> bytes:
    return encode(photo(seed, size), "JPEG", **options)


def fp(data: bytes) -> Fingerprint:
    return fingerprint(data, with_thumbnail=True)


@dataclass
class Corpus:
    """What ``seed_corpus`` stored, by name: the encoded bytes and the images' ids."""

    data: dict[str, bytes]
    ids: dict[str, int] = field(default_factory=dict)

    @property
    def original(self) -> bytes:
        return self.data["original"]


def seed_corpus(store: Store) -> Corpus:
    """One photo seen as four copies on three domains, an unrelated photo, hostile strings.

    - "original" 640×480 on a.test (2 pages) and b.test, seen 2024; thumbnail stored
    - "small"    320×240 re-encode on c.test, seen 2025; no thumbnail (falls back to its URL)
    - "big"      1280×960 on b.test, seen 2026; thumbnail stored
    - "evil"     the original as PNG with a javascript: page URL, script-y title and alt text
    - "other"    an unrelated photo on a.test
    """
    original = jpeg(1)
    small = encode(photo(1).resize((320, 240)), "JPEG", quality=70)
    big = encode(photo(1).resize((1280, 960)), "JPEG", quality=92)
    evil = encode(photo(1), "PNG")
    other = jpeg(2)
    day = lambda year: datetime(year, 3, 1, tzinfo=UTC)  # noqa: E731
    no_thumbnail = fingerprint(small)
    store.record(
        [
            Sighting(
                fp(original), "http://a.test/o.jpg", "http://a.test/1", "A one", None, day(2024)
            ),
            Sighting(
                fp(original), "http://a.test/o.jpg", "http://a.test/2", "A two", None, day(2024)
            ),
            Sighting(
                fp(original),
                "https://b.test/o.jpg",
                "https://b.test/",
                "B home",
                "a cat",
                day(2024),
            ),
            Sighting(
                no_thumbnail, "http://c.test/small.jpg", "http://c.test/", "C", None, day(2025)
            ),
            Sighting(
                fp(big), "https://b.test/big.jpg", "https://b.test/big", "B big", None, day(2026)
            ),
            Sighting(
                fingerprint(evil),
                "javascript:alert('img')",
                "javascript:alert('page')",
                "<script>alert('title')</script>",
                '"><img src=x onerror=alert(1)>',
                day(2023),
            ),
            Sighting(
                fp(other), "http://a.test/other.jpg", "http://a.test/1", "A one", None, day(2024)
            ),
        ]
    )
    with store.pool.connection() as conn:
        rows = conn.execute("SELECT sha256, id FROM images").fetchall()
    by_sha = dict(rows)
    corpus = Corpus(
        {"original": original, "small": small, "big": big, "evil": evil, "other": other}
    )
    for name, data in corpus.data.items():
        corpus.ids[name] = by_sha[fingerprint(data).sha256]
    return corpus


# --- local servers ------------------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    send_length: bool = True  # False: the body ends when the connection closes (HTTP/1.0)


class ImageServer:
    """An HTTP server on 127.0.0.1 answering fixed routes, recording the paths it was asked."""

    def __init__(self, routes: Mapping[str, Route], host: str = "127.0.0.1") -> None:
        self.routes = dict(routes)
        self.requests: list[tuple[str, str | None]] = []  # (path, Host header)
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests.append((self.path, self.headers.get("Host")))
                route = served.routes.get(self.path, Route(404, b"not found"))
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.send_length:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class AcceptRecorder:
    """A listening socket that only counts the connections made to it.

    ``hold`` keeps each connection open without answering: a server that never replies.
    ``drip`` answers each connection with these bytes, one every ``interval`` seconds (a
    server that is never silent long enough for a socket timeout), then closes it.
    """

    def __init__(
        self, host: str, *, hold: bool = False, drip: bytes = b"", interval: float = 0.5
    ) -> None:
        self.hold = hold
        self.drip = drip
        self.interval = interval
        self.held: list[socket.socket] = []
        self.listener = socket.create_server((host, 0))
        self.listener.settimeout(0.05)
        self.host = host
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.drip:
                threading.Thread(target=self._drip, args=(connection,), daemon=True).start()
            elif self.hold:
                self.held.append(connection)
            else:
                connection.close()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)  # the request
            for byte in self.drip:
                if self._stop.wait(self.interval):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return  # the client gave up

    def url(self, path: str = "/image.jpg") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def __enter__(self) -> AcceptRecorder:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self.thread.join()
        for connection in self.held:
            connection.close()
        self.listener.close()


class SiteServer:
    """The Flask app on waitress in a thread, at http://127.0.0.1:<port>/."""

    def __init__(self, app: Flask) -> None:
        self.server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=4)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self._closing = threading.Event()

    def _serve(self) -> None:
        try:
            self.server.run()
        except OSError:  # waitress's select() sees the listening socket closed under it
            if not self._closing.is_set():
                raise

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing.set()
        self.server.close()
        self.thread.join(timeout=5)


class TcpRelay:
    """A loopback port relaying to a PostgreSQL server, that can be stopped and started again on
    the same port: to the site behind it, a database server going down and coming back. The
    server may listen on TCP or only on its Unix socket, as the embedded one does.
    """

    def __init__(self, database_url: str) -> None:
        self._params = conninfo.conninfo_to_dict(database_url)
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The database's URL with its host and port replaced by this relay's."""
        return conninfo.make_conninfo(
            "", **{**self._params, "host": "127.0.0.1", "port": self.port}
        )

    def _connect_to_server(self) -> socket.socket:
        host = str(self._params.get("host") or "127.0.0.1")
        port = int(self._params.get("port") or 5432)
        if not host.startswith("/"):
            return socket.create_connection((host, port))
        server = socket.socket(socket.AF_UNIX)
        server.connect(f"{host}/.s.PGSQL.{port}")
        return server

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        """Close the port and every relayed connection, as a stopped server would."""
        assert self._listener is not None
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
        self._listener.close()
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = self._connect_to_server()
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def __enter__(self) -> TcpRelay:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
