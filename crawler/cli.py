"""``lookalike crawl``: run the ``site`` spider in this process and print the crawl's summary.

Running the same command again resumes a crawl that did not finish (killed, Ctrl-C, database
gone); with ``--redis`` several copies of the command share one frontier.

Scrapy's log goes to ``$LOOKALIKE_HOME/logs/crawl.log``; the terminal gets a progress line and
the summary, plus the whole log with ``-v`` or ``--log-level``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from scrapy.crawler import Crawler, CrawlerProcess
from scrapy.settings import Settings
from scrapy.utils.ossignal import install_shutdown_handlers

from crawler.extract import normalise_url
from lookalike.config import database_url, lookalike_home
from lookalike.store import crawls
from lookalike.store.db import apply_migrations, connect

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# After a first Ctrl-C the crawl gets this long to close cleanly, then stops anyway: what was
# not committed is not marked done in PostgreSQL, so the next run fetches it again.
STOP_GRACE_SECONDS = 1.5
EXIT_UNFINISHED = 1
_CLEAR_LINE = "\r\033[K" if sys.stderr.isatty() else ""  # over the progress line


@click.command("crawl")
@click.argument("urls", nargs=-1)
@click.option(
    "--seeds",
    "seeds_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of seed URLs, one per line.",
)
@click.option("--depth", type=click.IntRange(min=0), help="Links to follow from a seed [3].")
@click.option("--max-pages", type=click.IntRange(min=0), help="Pages per crawl, 0: no cap [10000].")
@click.option(
    "--allow-domain",
    "allow_domains",
    multiple=True,
    help="Follow links within this domain (repeatable; default: the seeds' hosts).",
)
@click.option("--delay", type=click.FloatRange(min=0), help="Seconds between requests to a host.")
@click.option("--no-throttle", is_flag=True, help="Turn AutoThrottle off (local benchmarks).")
@click.option("--redis", "redis_url", metavar="URL", help="Share the frontier with other workers.")
@click.option("-v", "--verbose", is_flag=True, help="Show Scrapy's log (INFO) instead of progress.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Show Scrapy's log from this level on (the log file gets it too) [file: INFO].",
)
@click.option(
    "-s",
    "--set",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    help="Any Scrapy or LOOKALIKE_* setting (repeatable).",
)
def crawl(
    urls: tuple[str, ...],
    seeds_file: Path | None,
    depth: int | None,
    max_pages: int | None,
    allow_domains: tuple[str, ...],
    delay: float | None,
    no_throttle: bool,
    redis_url: str | None,
    verbose: bool,
    log_level: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Crawl the sites at URLS and record every image sighting in the database."""
    seeds = list(urls) + (seeds_file.read_text(encoding="utf-8").split() if seeds_file else [])
    if not seeds:
        raise click.UsageError("give at least one seed URL (or --seeds FILE)")
    bad = [url for url in seeds if normalise_url(url) is None]
    if bad:
        raise click.UsageError(f"not an http(s) URL: {' '.join(bad)}")
    url = database_url()
    apply_migrations(url)  # fails here, with a one-line reason, if the database is unreachable

    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    if delay is not None:
        minimum = settings.getfloat("LOOKALIKE_MIN_DOWNLOAD_DELAY")
        settings.set("DOWNLOAD_DELAY", max(delay, minimum), priority="cmdline")
    if no_throttle:
        settings.set("AUTOTHROTTLE_ENABLED", False, priority="cmdline")
    if redis_url:
        settings.set("REDIS_URL", redis_url, priority="cmdline")
    shown_level = (log_level or "INFO").upper() if verbose or log_level else None
    log_file = lookalike_home() / "logs" / "crawl.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    settings.set("LOG_FILE", str(log_file), priority="cmdline")
    settings.set("LOG_LEVEL", shown_level or "INFO", priority="cmdline")
    settings.set("LOOKALIKE_PROGRESS_LINE", not shown_level and sys.stderr.isatty(), "cmdline")
    for override in overrides:
        name, sep, value = override.partition("=")
        if not sep:
            raise click.UsageError(f"--set needs NAME=VALUE, got {override!r}")
        settings.set(name, value, priority="cmdline")

    arguments: dict[str, object] = {"start_urls": " ".join(seeds)}
    if depth is not None:
        arguments["depth"] = depth
    if max_pages is not None:
        arguments["max_pages"] = max_pages
    if allow_domains:
        arguments["allow_domains"] = ",".join(allow_domains)

    _quiet_resource_tracker()
    process = CrawlerProcess(settings)
    _log_to_terminal(settings, shown_level)
    crawler = process.create_crawler("site")
    failures: list[BaseException] = []
    process.crawl(crawler, **arguments).addErrback(lambda failure: failures.append(failure.value))
    _reactor().addSystemEventTrigger(
        "after", "startup", install_shutdown_handlers, _Interrupts(process, crawler).first
    )
    process.start(install_signal_handlers=False)

    spider = crawler.spider
    if failures or spider is None or not hasattr(spider, "crawl_id"):
        reason = (str(failures[0]).strip().splitlines() or ["?"])[0] if failures else "see the log"
        raise click.ClickException(f"the crawl could not start: {reason}")
    with connect(url) as conn:
        summary = crawls.get_crawl(conn, spider.crawl_id)
    assert summary is not None
    click.echo(summary.one_line())
    if summary.finished_at is None:
        click.echo("crawl not finished: run the same command again to resume it", err=True)
        sys.exit(EXIT_UNFINISHED)


def _log_to_terminal(settings: Settings, level: str | None) -> None:
    """Scrapy logs to its file; the terminal gets the log at ``level``, else only our warnings.

    Without ``-v`` that leaves the lines a person must act on (the database is away, workers
    re-queue stalled requests), not Scrapy's or the embedded server's chatter.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(settings.get("LOG_FORMAT"), settings.get("LOG_DATEFORMAT"))
    )
    handler.setLevel(level or logging.WARNING)
    if level is None:
        handler.addFilter(lambda record: record.name.split(".")[0] in ("crawler", "lookalike"))
    logging.getLogger().addHandler(handler)


def _quiet_resource_tracker() -> None:
    """A stop at once skips multiprocessing's clean-up; the resource tracker then removes the
    hashing pool's semaphores itself, and need not print a warning about them."""
    quiet = "ignore:resource_tracker:UserWarning"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (os.environ.get("PYTHONWARNINGS"), quiet)))


class _Interrupts:
    """Ctrl-C: stop cleanly within STOP_GRACE_SECONDS, else at once; a second one: at once."""

    def __init__(self, process: CrawlerProcess, crawler: Crawler) -> None:
        self.process = process
        self.crawler = crawler

    def first(self, signum: int, frame: Any) -> None:
        install_shutdown_handlers(self.now)
        _reactor().callFromThread(self._stop_cleanly)

    def _stop_cleanly(self) -> None:
        click.echo(
            f"{_CLEAR_LINE}stopping {self._crawl_name()}: it is resumable, run the same command "
            "again (Ctrl-C again stops at once)",
            err=True,
        )
        self.process.stop().addBoth(lambda _: _stop_reactor())
        _reactor().callLater(STOP_GRACE_SECONDS, self.now)

    def now(self, signum: int | None = None, frame: Any = None) -> None:
        """Exit without waiting: nothing uncommitted was marked done, so a resume redoes it."""
        message = (
            f"{_CLEAR_LINE}{self._crawl_name()} stopped: run the same command again to resume it\n"
        )
        os.write(sys.stderr.fileno(), message.encode())
        os._exit(EXIT_UNFINISHED)

    def _crawl_name(self) -> str:
        crawl_id = getattr(self.crawler.spider, "crawl_id", None)
        return f"crawl {crawl_id}" if crawl_id else "the crawl"


def _reactor() -> Any:
    """Twisted's reactor, imported only once Scrapy has installed the asyncio one."""
    from twisted.internet import reactor

    return reactor


def _stop_reactor() -> None:
    if _reactor().running:
        _reactor().stop()
