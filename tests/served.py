"""`lookalike serve` in a real subprocess, with its memory read from /proc.

Hostile-input tests assert bounds on the server a user runs: its status answers, how long they
take, and how far its resident memory rose (``VmHWM``, the kernel's peak) or stays (``VmRSS``).
An in-process Flask client could not show either: the test runner's own memory is in the way.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from benchmarks.peak_memory import reset_peak, status_kb


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServedSite:
    process: subprocess.Popen[str]
    url: str

    @property
    def peak_rss_mb(self) -> float:
        return status_kb("VmHWM", self.process.pid) / 1024

    @property
    def rss_mb(self) -> float:
        return status_kb("VmRSS", self.process.pid) / 1024

    def reset_peak(self) -> None:
        """Start ``peak_rss_mb`` again from the current RSS."""
        reset_peak(self.process.pid)

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def served_site(
    env: Mapping[str, str], *, workers: int = 4, extra_env: Mapping[str, str] | None = None
) -> Iterator[ServedSite]:
    """``lookalike serve`` on a free loopback port, ready to answer; stopped afterwards."""
    port = free_port()
    process = subprocess.Popen(
        ["lookalike", "serve", "--port", str(port), "--workers", str(workers)],
        env={**env, **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    site = ServedSite(process, f"http://127.0.0.1:{port}")
    try:
        _wait_until_ready(site, time.monotonic() + 60)
        yield site
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def upload(site: ServedSite, data: bytes, *, timeout: float = 120) -> tuple[int, bytes, float]:
    """POST ``data`` to /api/search as a browser would: (status, body, seconds)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{site.url}/api/search",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    return status, answer, time.monotonic() - started


def _wait_until_ready(site: ServedSite, deadline: float) -> None:
    while True:
        if not site.alive():
            raise RuntimeError(f"lookalike serve exited: {site.process.stderr.read()}")
        try:
            with urllib.request.urlopen(f"{site.url}/api/stats", timeout=2) as response:
                json.load(response)
                return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
