"""The site in a real browser: headless Chromium (Debian's) driven by Playwright.

One browser and one server (waitress, in a thread, on 127.0.0.1) serve every test here; the
page never loads anything from another host. One test saves the README's screenshot when
``LOOKALIKE_README_SCREENSHOT=1`` asks for it, and a throwaway one otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance
from playwright.sync_api import Browser, Page, sync_playwright

from lookalike.fingerprint import fingerprint
from lookalike.store import Sighting, Store
from lookalike.store.banks import Banks, FlagTarget
from lookalike.store.db import apply_migrations, open_pool, scratch_database
from tests.crawl_site import wait_for
from tests.images import encode, photo, textured_photo
from tests.web_support import SiteServer, running_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# A fresh machine may lack Debian's chromium (`apt-get install -y chromium`); CI installs it
# and must never skip these. Each test is skipped, so the count shows how many did not run.
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
    reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)",
)
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshot-results.png"
MODERATOR_KEY = "amy-browser-key-0123456789"
PHONE, DESKTOP = 390, 1280  # viewport widths the layout tests look at
LONG_NAME = "IMG_20261201_101010_HDR_portrait_mode_exported_from_the_phone_gallery_final.jpg"
TEXTURED = textured_photo(31, (800, 600))  # stored with its local features: found when cropped
CROPPED = encode(TEXTURED.crop((0, 0, round(0.7 * TEXTURED.width), TEXTURED.height)), "JPEG")


@dataclass
class Site:
    url: str
    query: bytes  # the photo people search with
    ids: dict[str, int]


def _with_caption_box(image: Image.Image) -> Image.Image:
    """An edited copy: a white box over a corner, a few dHash bits away from the original."""
    edited = image.copy()
    ImageDraw.Draw(edited).rectangle((500, 380, 800, 600), fill=(255, 255, 255))
    return edited


def _seed(store: Store) -> tuple[bytes, dict[str, int]]:
    """A photo with copies across several sites, an unrelated one, a hostile sighting, and a
    textured photo stored with its local features."""
    original = photo(7, (800, 600))
    copies = {
        "original": encode(original, "JPEG", quality=90),
        "thumbnail": encode(original.resize((400, 300)), "JPEG", quality=70),
        "large": encode(original.resize((1600, 1200)), "JPEG", quality=85),
        "brighter": encode(ImageEnhance.Brightness(original).enhance(1.08), "JPEG"),
        "captioned": encode(_with_caption_box(original), "JPEG"),
        "png": encode(original, "PNG"),
        "unrelated": encode(photo(8, (800, 600)), "JPEG"),
        "textured": encode(TEXTURED, "JPEG", quality=90),
    }
    where = {
        "original": [("photos.example", "Sunset over the bay", 2021)],
        "thumbnail": [
            ("blog.example", "Ten places to watch the sun go down", 2022),
            ("forum.example", "Where was this taken?", 2023),
            ("photos.example", "Gallery: evenings", 2022),
        ],
        "large": [("wallpapers.example", "Free 1600×1200 wallpapers", 2024)],
        "brighter": [("news.example", "Heat wave: evenings by the sea", 2025)],
        "captioned": [("memes.example", "When the sunset hits just right", 2025)],
        "png": [("archive.example", "<b>Mirror</b> of photos.example", 2022)],
        "unrelated": [("photos.example", "Another photo", 2021)],
        "textured": [("art.example", "Shards", 2024)],
    }
    sightings = [
        Sighting(
            fingerprint(copies[name], with_thumbnail=True, with_features=name == "textured"),
            f"https://{domain}/images/{name}.jpg",
            f"https://{domain}/{name}/{n}",
            title,
            f"{name} picture",
            datetime(year, 6, 1, tzinfo=UTC),
        )
        for name, places in where.items()
        for n, (domain, title, year) in enumerate(places)
    ]
    sightings.append(
        Sighting(
            fingerprint(copies["png"], with_thumbnail=True),
            "javascript:alert('image')",
            "javascript:alert('page')",
            "<script>alert('title')</script>",
            None,
            datetime(2023, 6, 1, tzinfo=UTC),  # fixed, so the screenshot is the same every day
        )
    )
    store.record(sightings)
    flagged = FlagTarget.from_fingerprint(fingerprint(copies["original"], with_thumbnail=True))
    Banks(store.pool).flag(flagged, bank="banned", reason="test", flagged_by="amy")
    with store.pool.connection() as conn:
        by_sha = dict(conn.execute("SELECT sha256, id FROM images").fetchall())
    return copies["original"], {n: by_sha[fingerprint(d).sha256] for n, d in copies.items()}


@pytest.fixture(scope="module")
def site(server_url: str) -> Iterator[Site]:
    with scratch_database(server_url, "lookalike_test_browser") as url:
        apply_migrations(url)
        with Store(open_pool(url, init_schema=False)) as store:
            query, ids = _seed(store)
        moderators = {"amy": hashlib.sha256(MODERATOR_KEY.encode()).hexdigest()}
        with (
            running_app(url, MODERATOR_KEYS=moderators) as app,  # CSRF on, as in production
            SiteServer(app) as server,
        ):
            yield Site(server.url, query, ids)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def problems() -> list[str]:
    """Script errors and console errors (blocked loads, CSP violations) seen by the page."""
    return []


@pytest.fixture
def page(browser: Browser, problems: list[str], request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab (1100 px wide, or the width parametrised indirectly); the test fails if
    anything lands in ``problems``."""
    width = getattr(request, "param", 1100)
    context = browser.new_context(viewport={"width": width, "height": 1300})
    opened = context.new_page()
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    opened.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    yield opened
    context.close()
    assert problems == []


def _upload(page: Page, site: Site, name: str = "sunset.jpg", data: bytes | None = None) -> None:
    page.goto(site.url + "/")
    page.set_input_files(
        "#image-input", {"name": name, "mimeType": "image/jpeg", "buffer": data or site.query}
    )
    with page.expect_navigation():
        page.click("#search-button")


def _match_ids(page: Page) -> list[int]:
    return [
        int(i)
        for i in page.eval_on_selector_all("li.match", "els => els.map(e => e.dataset.imageId)")
    ]


def _images_loaded(page: Page, selector: str) -> list[bool]:
    return page.eval_on_selector_all(
        selector, "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"
    )


def test_upload_through_the_form_shows_the_matches(page: Page, site: Site) -> None:
    _upload(page, site)
    assert page.url.startswith(site.url + "/search?dhash=")
    assert page.text_content("#match-count").strip() == "6 matching images"
    assert sorted(_match_ids(page)) == sorted(
        site.ids[n] for n in ("original", "thumbnail", "large", "brighter", "captioned", "png")
    )
    # the query's re-encoded thumbnail (a data: URL) and the stored thumbnails all display
    assert _images_loaded(page, "img.query-thumb") == [True]
    assert all(_images_loaded(page, "li.match img.thumb")) and _images_loaded(page, "li.match img")
    assert page.get_attribute("img.query-thumb", "src").startswith("data:image/webp;base64,")
    # the hostile sighting is text, not a link, and its title did not run
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("text=<script>alert('title')</script>").count() == 1


def test_sorting_and_filtering_apply_on_change(page: Page, site: Site) -> None:
    _upload(page, site)
    with page.expect_navigation():
        page.select_option("#sort", "newest")
    # same day: the closer match first
    assert _match_ids(page)[:2] == [site.ids["brighter"], site.ids["captioned"]]
    with page.expect_navigation():
        page.select_option("#sort", "pages")
    assert _match_ids(page)[0] == site.ids["thumbnail"]
    with page.expect_navigation():
        page.select_option("#domain", "wallpapers.example")
    assert _match_ids(page) == [site.ids["large"]]
    assert "seen on wallpapers.example" in page.text_content("#match-count")
    assert page.eval_on_selector("#sort", "s => s.value") == "pages"  # kept while filtering
    with page.expect_navigation():
        page.select_option("#domain", "")
    with page.expect_navigation():
        page.fill("#radius", "2")
        page.dispatch_event("#radius", "change")
    assert "radius 2 bits" in page.text_content(".query-facts")
    assert page.text_content("#match-count").strip() == "5 matching images"
    assert site.ids["captioned"] not in _match_ids(page)  # 4 bits away


def test_compare_view_puts_query_and_match_side_by_side(page: Page, site: Site) -> None:
    _upload(page, site)
    edited = page.locator(f"li.match[data-image-id='{site.ids['captioned']}']")
    with page.expect_navigation():
        edited.locator("a.compare-link").click()
    expected = bin(
        fingerprint(site.query).hashes["dhash"] ^ fingerprint_of(site, "captioned")
    ).count("1")
    assert expected > 0
    assert f"dHash distance {expected} of 64 bits" in page.text_content("#compare-distance")
    assert _images_loaded(page, ".side-by-side img") == [True, True]
    assert page.locator("td.differs").count() == 2 * expected


def _found_by_api(site: Site, data: bytes, image_id: int) -> bool:
    boundary = "lookalike-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        site.url + "/api/search",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request) as response:
        return image_id in [match["image_id"] for match in json.load(response)["matches"]]


# The box a polygon's points span on screen (its bounding_box() includes the stroke's miters).
_ON_SCREEN = """polygon => {
    const matrix = polygon.getScreenCTM();
    const points = Array.from(polygon.points, point => point.matrixTransform(matrix));
    const xs = points.map(point => point.x), ys = points.map(point => point.y);
    const [x, y] = [Math.min(...xs), Math.min(...ys)];
    return {x, y, width: Math.max(...xs) - x, height: Math.max(...ys) - y};
}"""


def test_a_cropped_copy_is_named_in_the_results_and_outlined_on_both_images(
    page: Page, site: Site
) -> None:
    textured = site.ids["textured"]
    wait_for(lambda: _found_by_api(site, CROPPED, textured), timeout=15)  # index built
    _upload(page, site, "crop.jpg", CROPPED)
    match = page.locator(f"li.match[data-image-id='{textured}']")
    assert match.locator(".edits").text_content() == "the query is 70% of it"
    with page.expect_navigation():
        match.locator("a.compare-link").click()
    assert "the query is 70% of it" in page.text_content("#relation")
    assert page.locator(".side-by-side svg.outline polygon").count() == 2
    figures = [page.locator(".side-by-side figure").nth(n) for n in (0, 1)]
    query_box, stored_box = (figure.locator("img.thumb").bounding_box() for figure in figures)
    query_region, match_region = (
        figure.locator("polygon").evaluate(_ON_SCREEN) for figure in figures
    )
    # Each picture is contained in a square box: the 560×600 query fills its height, the
    # 800×600 match its width. The query is outlined whole, the match's left 70%.
    assert query_region["height"] == pytest.approx(query_box["height"] - 2, abs=3)
    assert query_region["width"] == pytest.approx((query_box["height"] - 2) * 560 / 600, abs=3)
    assert match_region["width"] == pytest.approx(0.7 * (stored_box["width"] - 2), abs=4)
    assert match_region["height"] == pytest.approx((stored_box["width"] - 2) * 0.75, abs=3)
    assert match_region["x"] == pytest.approx(stored_box["x"] + 1, abs=2)


def fingerprint_of(site: Site, name: str) -> int:
    """The stored dHash of one seeded copy, as the API reports it."""
    with urllib.request.urlopen(f"{site.url}/api/images/{site.ids[name]}") as response:
        return int(json.load(response)["dhash"], 16)


@pytest.mark.parametrize("gesture", ["drop", "paste"])
def test_dropping_or_pasting_an_image_searches_for_it(page: Page, site: Site, gesture: str) -> None:
    page.goto(site.url + "/")
    encoded = base64.b64encode(site.query).decode()
    with page.expect_navigation():
        page.evaluate(
            """([encoded, gesture]) => {
                const bytes = Uint8Array.from(atob(encoded), c => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
                if (gesture === "drop") {
                    document.getElementById("drop-zone").dispatchEvent(
                        new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
                } else {
                    document.dispatchEvent(
                        new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true}));
                }
            }""",
            [encoded, gesture],
        )
    assert page.text_content("#match-count").strip() == "6 matching images"
    assert "dropped.jpg" in page.text_content("h1")


def test_a_bad_file_gets_a_readable_error_page(page: Page, site: Site, problems: list[str]) -> None:
    page.goto(site.url + "/")
    page.set_input_files(
        "#image-input", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}
    )
    with page.expect_navigation():
        page.click("#search-button")
    assert page.text_content("#error h1").strip() == "400 Bad Request"
    assert page.text_content(".error-message").strip() == "not an image"
    assert problems == [
        "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
    ]
    problems.clear()


def test_results_screenshot_for_the_readme(page: Page, site: Site, tmp_path: Path) -> None:
    _upload(page, site)
    asked = os.environ.get("LOOKALIKE_README_SCREENSHOT") == "1"
    target = SCREENSHOT if asked else tmp_path / SCREENSHOT.name
    page.screenshot(path=str(target), full_page=True)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Words of ``selector``'s text (outside ``skip``, which may break anywhere) that the browser
# laid out on more than one line: each word's Range has one client rect unless it was split.
_SPLIT_WORDS = """([selector, skip]) => {
    const split = [];
    for (const element of document.querySelectorAll(selector)) {
        const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            if (skip && node.parentElement.closest(skip)) continue;
            for (const match of node.data.matchAll(/\\S+/g)) {
                const range = document.createRange();
                range.setStart(node, match.index);
                range.setEnd(node, match.index + match[0].length);
                if (range.getClientRects().length > 1) split.push(match[0]);
            }
        }
    }
    return split;
}"""


def _box(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return box


def _no_sideways_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("page", [DESKTOP], indirect=True)
def test_compare_stays_side_by_side_with_a_long_file_name(
    page: Page, site: Site, tmp_path: Path
) -> None:
    _upload(page, site, LONG_NAME)
    with page.expect_navigation():
        page.locator("li.match a.compare-link").nth(1).click()
    page.screenshot(path=str(tmp_path / "compare-1280.png"), full_page=True)
    query, match = (
        _box(page, ".side-by-side figure >> nth=0"),
        _box(page, ".side-by-side figure >> nth=1"),
    )
    assert abs(query["y"] - match["y"]) < 1 and match["x"] >= query["x"] + query["width"]
    assert page.text_content("h1").strip() == "Your image and match 2 of 6"
    assert _no_sideways_scroll(page)


@pytest.mark.parametrize("page", [PHONE], indirect=True)
def test_on_a_phone_the_results_heading_breaks_between_words(
    page: Page, site: Site, tmp_path: Path
) -> None:
    _upload(page, site, LONG_NAME)
    page.screenshot(path=str(tmp_path / "results-390.png"), full_page=True)
    assert page.evaluate(_SPLIT_WORDS, [".query-panel h1", ".query-label"]) == []
    assert _no_sideways_scroll(page)


@pytest.mark.parametrize("page", [PHONE], indirect=True)
def test_a_bookmarked_hash_page_shows_the_hash_once_and_whole(
    page: Page, site: Site, tmp_path: Path
) -> None:
    dhash = fingerprint(site.query).hex("dhash")
    page.goto(f"{site.url}/search?dhash={dhash}")
    page.screenshot(path=str(tmp_path / "bookmarked-390.png"), full_page=True)
    assert page.inner_text("main").count(dhash) == 1
    assert page.evaluate(_SPLIT_WORDS, [".query-panel", None]) == []
    assert _no_sideways_scroll(page)


@pytest.mark.parametrize("page", [DESKTOP, PHONE], indirect=True)
def test_moderation_pages_are_styled_like_the_rest(page: Page, site: Site, tmp_path: Path) -> None:
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.goto(site.url + "/moderation/")
    key_input = page.locator("#key")
    assert key_input.evaluate("e => parseFloat(getComputedStyle(e).paddingLeft)") >= 6
    assert key_input.evaluate("e => getComputedStyle(e).borderTopStyle") == "solid"
    key_input.fill(MODERATOR_KEY)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.screenshot(path=str(tmp_path / f"banks-{width}.png"), full_page=True)
    cell = page.locator("table.banks td").first
    assert cell.evaluate("e => parseFloat(getComputedStyle(e).paddingLeft)") >= 8
    signed_in, sign_out = _box(page, ".moderator-bar strong"), _box(page, ".moderator-bar button")
    assert abs(signed_in["y"] - sign_out["y"]) < signed_in["height"]  # on the same line
    assert _no_sideways_scroll(page)
    with page.expect_navigation():
        page.click("table.banks a")
    with page.expect_navigation():
        page.click("li.entry a")
    page.screenshot(path=str(tmp_path / f"entry-{width}.png"), full_page=True)
    shown = _match_ids(page)
    assert len(shown) == len(set(shown)) == 6  # one item per matching image
    assert page.locator("li.match").first.locator("li.sighting").count() >= 1
    _upload(page, site)
    assert page.locator("nav a", has_text="Banks").count() == 1  # search pages too
    assert _no_sideways_scroll(page)
