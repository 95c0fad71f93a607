"""``lookalike crawl``: run the ``site`` spider in this process and print the crawl's summary.

Running the same command again resumes a crawl that did not finish (killed, Ctrl-C, database
gone); with ``--redis`` several copies of the command share one frontier.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings

from crawler.extract import normalise_url
from lookalike import crawls
from lookalike.config import database_url
from lookalike.db import apply_schema, connect


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
    apply_schema(url)  # fails here, with a one-line reason, if the database is unreachable

    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    if delay is not None:
        minimum = settings.getfloat("LOOKALIKE_MIN_DOWNLOAD_DELAY")
        settings.set("DOWNLOAD_DELAY", max(delay, minimum), priority="cmdline")
    if no_throttle:
        settings.set("AUTOTHROTTLE_ENABLED", False, priority="cmdline")
    if redis_url:
        settings.set("REDIS_URL", redis_url, priority="cmdline")
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

    process = CrawlerProcess(settings)
    crawler = process.create_crawler("site")
    failures: list[BaseException] = []
    process.crawl(crawler, **arguments).addErrback(lambda failure: failures.append(failure.value))
    process.start()

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
        sys.exit(1)
