"""The crawler end to end: `lookalike crawl` in a subprocess against sites served on 127.0.0.1,
with assertions on the rows it leaves in PostgreSQL.

The main site is addressed as ``localhost`` and its "CDN" as ``127.0.0.1`` (another host name
on another port): images there are fetched, links there are not followed.
"""

from __future__ import annotations

import base64
import itertools
import subprocess
import sys
import time

import psycopg
import pytest
from PIL import Image

from lookalike.fingerprint import fingerprint
from tests.crawl_site import (
    ROOT,
    Resource,
    Site,
    calendar,
    crawl_command,
    drip,
    html,
    jpeg,
    linked_routes,
    png,
    redirect,
    run_crawl,
    send,
    snapshot,
)
from tests.images import encode, rejected_samples

TINY_GIF = base64.b64encode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").decode()


def rows(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def sightings(url: str) -> set[tuple[str, str]]:
    return {
        (str(page), str(image))
        for page, image in rows(url, "SELECT page_url, image_url FROM image_sightings")
    }


def crawl_row(url: str) -> tuple[object, ...]:
    (row,) = rows(
        url, "SELECT outcome, pages, images_seen, new_images, new_sightings, errors FROM crawls"
    )
    return row


@pytest.fixture
def cdn() -> Site:
    with Site(
        {
            "/robots.txt": Resource(b"User-agent: *\nAllow: /\n", content_type="text/plain"),
            "/og.jpg": jpeg(20),
            "/cdn-page.html": html('<img src="/never.jpg">'),
            "/never.jpg": jpeg(21),
        }
    ) as site:
        yield site


@pytest.fixture
def site(cdn: Site) -> Site:
    home = f"""
      <meta property="og:image" content="{cdn.url("/og.jpg")}">
      <meta name="twitter:image" content="/img/tw.jpg">
      <img src="/img/plain.jpg" alt="A  plain
         photo">
      <img src="/img/small.jpg" srcset="/img/small.jpg 100w, /img/mid.jpg 400w,
           /img/large.jpg 800w" alt="sized">
      <picture>
        <source srcset="/img/pic-1x.png 1x, /img/pic-2x.png 2x">
        <img src="/img/pic-fallback.jpg">
      </picture>
      <img src="data:image/gif;base64,{TINY_GIF}" data-src="/img/lazy.jpg" alt="lazy">
      <img data-srcset="/img/lazy-a.jpg 1x, /img/lazy-b.jpg 2x">
      <img data-original="/img/orig.jpg">
      <a href="/img/linked.jpg">a linked photo</a>
      <a href="/second#top">second</a>
      <a href="/based">based</a>
      <a href="{cdn.url("/cdn-page.html")}">the CDN's own page</a>
      <a href="mailto:someone@example.org">mail</a>
    """
    routes = {
        "/robots.txt": Resource(b"User-agent: *\nDisallow: /private\n", content_type="text/plain"),
        "/": html(home, "Home"),
        "/second": html(
            '<img src="/img/plain.jpg" alt="again"><a href="/private/x">secret</a>', "Second"
        ),
        "/based": html('<base href="/assets/"><img src="b.jpg">', "Based"),
        "/private/x": html('<img src="/img/secret.jpg">', "Secret"),
    }
    for seed, name in enumerate(
        [
            "plain", "small", "mid", "large", "pic-fallback", "lazy", "lazy-a", "lazy-b",
            "orig", "linked", "tw", "secret",
        ]
    ):  # fmt: skip
        routes[f"/img/{name}.jpg"] = jpeg(seed)
    routes["/img/pic-1x.png"] = png(30)
    routes["/img/pic-2x.png"] = png(31, (400, 300))
    routes["/assets/b.jpg"] = jpeg(32)
    with Site(routes, host="localhost") as served:
        yield served


def test_crawl_records_every_image_form(
    site: Site, cdn: Site, database_url: str, cli_env: dict[str, str]
) -> None:
    result = run_crawl(cli_env, site.url("/"))
    assert result.returncode == 0, result.stderr[-3000:]

    home, second, based = site.url("/"), site.url("/second"), site.url("/based")
    on_home = {
        "/img/plain.jpg", "/img/small.jpg", "/img/large.jpg", "/img/pic-2x.png",
        "/img/pic-fallback.jpg", "/img/lazy.jpg", "/img/lazy-b.jpg", "/img/orig.jpg",
        "/img/linked.jpg", "/img/tw.jpg",
    }  # fmt: skip
    expected = {(home, site.url(path)) for path in on_home}
    expected |= {(home, cdn.url("/og.jpg")), (second, site.url("/img/plain.jpg"))}
    expected |= {(based, site.url("/assets/b.jpg"))}
    assert sightings(database_url) == expected

    # Only the largest srcset candidate; robots.txt obeyed; the CDN's pages not followed.
    for never in ("/img/mid.jpg", "/img/pic-1x.png", "/private/x", "/img/secret.jpg"):
        assert site.hits[never] == 0, never
    assert cdn.hits["/og.jpg"] == 1 and cdn.hits["/cdn-page.html"] == 0
    assert all(count == 1 for count in site.hits.values()), site.hits  # nothing fetched twice
    assert site.user_agents == {"LookalikeBot/0.1 (+https://github.com/lookalike/lookalike)"}

    # One image on two pages: one images row, two sightings, each with its own alt text.
    plain = fingerprint(site.routes["/img/plain.jpg"].body)  # type: ignore[union-attr]
    assert rows(
        database_url,
        "SELECT page_title, alt_text FROM image_sightings WHERE sha256 = %s ORDER BY page_title",
        (plain.sha256,),
    ) == [("Home", "A plain photo"), ("Second", "again")]
    assert rows(database_url, "SELECT count(*) FROM images") == [(12,)]
    assert rows(database_url, "SELECT count(*) FROM thumbnails") == [(12,)]
    # every crawled image is described for the robust search, exactly as the core describes it
    assert rows(database_url, "SELECT count(*) FROM image_features") == [(12,)]
    assert rows(
        database_url,
        "SELECT f.features FROM image_features f JOIN images i ON i.id = f.image_id"
        " WHERE i.sha256 = %s",
        (plain.sha256,),
    ) == [(fingerprint(site.routes["/img/plain.jpg"].body, with_features=True).features,)]  # type: ignore[union-attr]

    outcome, pages, images_seen, new_images, new_sightings, errors = crawl_row(database_url)
    assert (outcome, pages, images_seen, new_images, new_sightings) == ("finished", 3, 12, 12, 13)
    assert errors == {"robots.txt disallowed": 1}
    ((recorded,),) = rows(database_url, "SELECT settings FROM crawls")
    assert recorded == {
        "allow_domains": ["localhost"],
        "depth": 3,
        "max_pages": 10000,
        "user_agent": "LookalikeBot/0.1 (+https://github.com/lookalike/lookalike)",
        "robots_txt": True,
        "autothrottle": False,
        "download_delay": 0.001,
        "concurrent_requests_per_domain": 2,
        "shared_frontier": False,
    }
    assert "crawl 1 finished: 3 pages, 12 images (12 new), 13 new sightings" in result.stdout
    assert "progress:" in result.stderr or "Spider closed" in result.stderr


def test_crawling_again_updates_last_seen_only(
    site: Site, database_url: str, cli_env: dict[str, str]
) -> None:
    assert run_crawl(cli_env, site.url("/")).returncode == 0
    before = rows(database_url, "SELECT id, last_seen FROM sightings ORDER BY id")
    second = run_crawl(cli_env, site.url("/"))
    assert second.returncode == 0, second.stderr[-3000:]
    after = rows(database_url, "SELECT id, last_seen FROM sightings ORDER BY id")
    assert [r[0] for r in after] == [r[0] for r in before]
    assert all(a[1] > b[1] for a, b in zip(after, before, strict=True))
    crawls = rows(
        database_url, "SELECT id, outcome, new_images, images_seen FROM crawls ORDER BY id"
    )
    assert crawls == [(1, "finished", 12, 12), (2, "finished", 0, 12)]
    stats = subprocess.run(
        [sys.executable, "-m", "lookalike", "stats"], env=cli_env, capture_output=True, text=True
    )
    assert stats.returncode == 0, stats.stderr
    listed = stats.stdout.split("recent crawls:\n")[1].splitlines()
    assert [line.split("  ", 2)[2] for line in listed] == [
        "crawl 2 finished: 3 pages, 12 images (0 new), 0 new sightings; errors: "
        "robots.txt disallowed: 1",
        "crawl 1 finished: 3 pages, 12 images (12 new), 13 new sightings; errors: "
        "robots.txt disallowed: 1",
    ]


def test_depth_and_page_caps(database_url: str, cli_env: dict[str, str]) -> None:
    chain = {
        f"/p{n}": html(f'<img src="/i{n}.jpg"><a href="/p{n + 1}">next</a>') for n in range(10)
    }
    chain |= {f"/i{n}.jpg": jpeg(n) for n in range(9)}
    with Site(chain) as served:
        shallow = run_crawl(
            cli_env, served.url("/p0"), "--depth", "2",
            "-s", "LOOKALIKE_CONTACT_URL=https://crawler.example/about",
        )  # fmt: skip
        assert shallow.returncode == 0, shallow.stderr[-3000:]
        assert served.user_agents == {"LookalikeBot/0.1 (+https://crawler.example/about)"}
        assert sorted(p for p in served.hits if p.startswith("/p")) == ["/p0", "/p1", "/p2"]
        # Images on the last page still count: the depth is about links, not images.
        assert served.hits["/i2.jpg"] == 1 and served.hits["/i3.jpg"] == 0
    with Site(chain) as served:
        capped = run_crawl(cli_env, served.url("/p0"), "--depth", "9", "--max-pages", "4")
        assert capped.returncode == 0, capped.stderr[-3000:]
        assert sorted(p for p in served.hits if p.startswith("/p")) == ["/p0", "/p1", "/p2", "/p3"]
    assert rows(database_url, "SELECT pages FROM crawls ORDER BY id") == [(3,), (4,)]


# Stock Scrapy counts a request against its host only once the task it scheduled runs: a
# reactor paused for longer than the delay between two requests started a third (1 run in 3).
# With no delay at all that window is the whole queue, so the race shows on every run.
@pytest.mark.parametrize("delay", ["0", "0.001"])
def test_per_domain_concurrency_holds_without_throttling(
    delay: str, database_url: str, cli_env: dict[str, str]
) -> None:
    with Site(linked_routes(20, 30), delay=0.05) as served:
        result = run_crawl(
            cli_env,
            served.url("/p0"),
            "--depth", "50",
            "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=2",
            "-s", f"DOWNLOAD_DELAY={delay}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(served.hits) == 1 + 20 + 30  # robots.txt, pages, images
        assert served.max_in_flight == 2


def test_crawl_delay_from_robots_txt_spaces_requests(
    database_url: str, cli_env: dict[str, str]
) -> None:
    stamps: list[float] = []

    def timed(handler: object) -> None:
        stamps.append(time.monotonic())
        send(handler, jpeg(len(stamps)))  # type: ignore[arg-type]

    routes: dict[str, object] = {
        "/robots.txt": Resource(b"User-agent: *\nCrawl-delay: 0.5\n", content_type="text/plain"),
        "/": html("".join(f'<img src="/{n}.jpg">' for n in range(4))),
    }
    routes |= {f"/{n}.jpg": timed for n in range(4)}
    with Site(routes) as served:  # type: ignore[arg-type]
        result = run_crawl(cli_env, served.url("/"))
        assert result.returncode == 0, result.stderr[-3000:]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) == 4 and min(gaps) >= 0.2, gaps  # Scrapy's jitter: 0.5 × 0.5…1.5


def test_followed_redirect_records_the_final_page(
    database_url: str, cli_env: dict[str, str]
) -> None:
    routes = {
        "/": html('<a href="/old">moved</a><img src="/img/old.jpg">'),
        "/old": redirect("/new", 301),
        "/new": html('<img src="/a.jpg" alt="moved here">', "New"),
        "/img/old.jpg": redirect("/img/new.jpg"),
        "/img/new.jpg": jpeg(4),
        "/a.jpg": jpeg(5),
    }
    with Site(routes) as served:
        result = run_crawl(cli_env, served.url("/"))
        assert result.returncode == 0, result.stderr[-3000:]
    # The page is recorded where it now lives; the image under the URL the page uses.
    assert sightings(database_url) == {
        (served.url("/new"), served.url("/a.jpg")),
        (served.url("/"), served.url("/img/old.jpg")),
    }
    assert (
        rows(
            database_url,
            "SELECT url, error FROM crawl_requests WHERE done_at IS NULL OR error <> ''",
        )
        == []
    )


def test_refuses_non_public_addresses_and_counts_them(
    database_url: str, cli_env: dict[str, str]
) -> None:
    routes = {
        "/": html(
            '<a href="/to-metadata">m</a><a href="/to-private">p</a>'
            '<img src="http://127.0.0.2:9/other-loopback.jpg">'
            '<img src="http://10.1.2.3/lan.jpg"><img src="http://0x7f000002/hex.jpg">'
            '<img src="/ok.jpg">'
        ),
        "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-private": redirect("http://192.168.0.1/admin"),
        "/ok.jpg": jpeg(3),
    }
    with Site(routes) as served:
        result = run_crawl(cli_env, served.url("/"))
        assert result.returncode == 0, result.stderr[-3000:]
    assert crawl_row(database_url)[5] == {"refused address": 5}
    assert sightings(database_url) == {(served.url("/"), served.url("/ok.jpg"))}


def test_hostile_site_ends_within_caps_and_counts_errors(
    database_url: str, cli_env: dict[str, str]
) -> None:
    truncated = jpeg(5).body[:2000]
    routes = {
        "/": html(
            '<a href="/loop1">loop</a><a href="/drip">drip</a><a href="/huge">huge</a>'
            '<a href="/calendar?m=0">calendar</a><a href="/s?sid=1">s1</a><a href="/s?sid=2">s2</a>'
            '<a href="/missing">missing</a><a href="/photo.png">not a page</a>'
            '<a href="/data.json">json</a>'
            '<img src="/fake.jpg"><img src="/broken.jpg"><img src="/big.jpg"><img src="/bomb.png">'
            '<img src="/good.jpg">'
        ),
        "/loop1": redirect("/loop2"),
        "/loop2": redirect("/loop1"),
        "/drip": drip,
        "/huge": html("<p>" + "x" * 300_000 + "</p>"),
        "/calendar": calendar,
        "/s": html('<img src="/good.jpg">', "session"),
        "/fake.jpg": html("I am a web page"),
        "/broken.jpg": Resource(truncated, content_type="image/jpeg"),
        "/big.jpg": Resource(b"\xff" * 300_000, content_type="image/jpeg"),
        "/bomb.png": Resource(encode(Image.new("L", (2000, 2000)), "PNG")),
        "/data.json": Resource(b'{"a": 1}', content_type="application/json"),
        "/good.jpg": jpeg(7),
        "/photo.png": png(8),
    }
    with Site(routes) as served:
        result = run_crawl(
            cli_env,
            served.url("/"),
            "--depth", "20", "--max-pages", "30",
            "-s", "LOOKALIKE_MAX_PAGE_BYTES=200000",
            "-s", "LOOKALIKE_MAX_IMAGE_BYTES=200000", "-s", "LOOKALIKE_MAX_PIXELS=1000000",
            "-s", "DOWNLOAD_TIMEOUT=2",
            timeout=90,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert served.hits["/s?sid=1"] + served.hits["/s?sid=2"] == 0
        assert served.hits["/s"] == 1  # session ids stripped: one page, not two
        assert sum(1 for p in served.hits if p.startswith("/calendar")) <= 30
    outcome, pages, _, _, _, errors = crawl_row(database_url)
    assert outcome == "finished"
    assert pages <= 30
    assert errors == {
        "too many redirects": 1,  # /loop1 ⇄ /loop2
        "timeout": 1,  # /drip
        "too large": 2,  # /huge page, /big.jpg bytes
        "image too large": 1,  # /bomb.png pixels
        "http 404": 1,
        "not html": 1,  # /data.json
        "not an image": 1,  # /fake.jpg
        "truncated or corrupt image": 1,  # /broken.jpg
    }
    assert sightings(database_url) >= {
        (served.url("/"), served.url("/good.jpg")),
        (served.url("/s"), served.url("/good.jpg")),
        (served.url("/"), served.url("/photo.png")),
    }


def test_each_kind_of_rejected_image_is_counted_under_its_label(
    database_url: str, cli_env: dict[str, str]
) -> None:
    samples = {f"/{n}.img": data for n, data in enumerate(rejected_samples().values())}
    page = html("".join(f'<img src="{path}">' for path in samples))
    routes = {"/": page, **{path: Resource(data) for path, data in samples.items()}}
    with Site(routes) as served:
        result = run_crawl(cli_env, served.url("/"), timeout=90)
        assert result.returncode == 0, result.stderr[-3000:]
    assert crawl_row(database_url)[5] == {kind.value: 1 for kind in rejected_samples()}


def test_scrapy_crawl_from_the_project_root(database_url: str, cli_env: dict[str, str]) -> None:
    with Site({"/": html('<img src="/a.jpg">'), "/a.jpg": jpeg(1)}) as served:
        result = subprocess.run(
            [sys.executable, "-m", "scrapy", "crawl", "site", "-a", f"start_urls={served.url('/')}",
             "-s", "AUTOTHROTTLE_ENABLED=0", "-s", "LOOKALIKE_FLUSH_SECONDS=0.2"],
            env=cli_env, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    assert sightings(database_url) == {(served.url("/"), served.url("/a.jpg"))}


def test_crawl_command_errors_are_one_line(cli_env: dict[str, str]) -> None:
    def run(*args: str, env: dict[str, str] = cli_env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            crawl_command(*args), env=env, capture_output=True, text=True, timeout=60
        )

    no_url = run()
    assert no_url.returncode == 2 and "give at least one seed URL" in no_url.stderr
    bad = run("ftp://example.org/", "javascript:alert(1)")
    assert bad.returncode == 2 and "not an http(s) URL: ftp://example.org/" in bad.stderr
    down = run(
        "http://127.0.0.1:9/", env={**cli_env, "DATABASE_URL": "postgresql://u@127.0.0.1:9/x"}
    )
    assert down.returncode == 1
    assert "Traceback" not in down.stderr and "cannot connect to the database" in down.stderr
    bad_setting = run("http://127.0.0.1:9/", "-s", "CONCURRENT_REQUESTS=lots")
    assert bad_setting.returncode == 1 and "Traceback" not in bad_setting.stderr
    assert "Error: the crawl could not start: invalid literal for int()" in bad_setting.stderr
    unreachable = run("http://127.0.0.1:9/")  # nothing listens on port 9
    assert unreachable.returncode == 0 and "Traceback" not in unreachable.stderr
    assert "errors: robots.txt unavailable: 1" in unreachable.stdout


def test_slash_and_index_html_of_one_site_are_one_page(cli_env: dict[str, str]) -> None:
    home = '<link rel="canonical" href="/"><a href="/index.html">home</a><img src="/a.jpg">'
    routes = {"/": html(home, "home"), "/index.html": html(home, "home"), "/a.jpg": jpeg(1)}
    with Site(routes) as site:
        result = run_crawl(cli_env, site.url("/"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert site.hits["/index.html"] == 1  # fetched, and filed under its canonical URL
    facts = snapshot(cli_env["DATABASE_URL"])
    assert {url for url, _ in facts["pages"]} == {site.url("/")}
    assert len(facts["sightings"]) == 1
