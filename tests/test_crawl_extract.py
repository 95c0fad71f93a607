"""What the crawler takes from a page: image URLs in every form, links, normalised URLs."""

from __future__ import annotations

import pytest
from scrapy.http import HtmlResponse

from crawler.extract import ImageRef, largest_candidate, normalise_url, page_contents


@pytest.mark.parametrize(
    ("srcset", "largest"),
    [
        ("a.jpg 1x, b.jpg 2x", "b.jpg"),
        ("big.jpg 1600w, small.jpg 400w, mid.jpg 800w", "big.jpg"),
        ("a.jpg 100w,b.jpg 200w", "b.jpg"),
        ("only.jpg", "only.jpg"),
        ("/img/a,b.jpg 1x, /img/c.jpg 1.5x", "/img/c.jpg"),
        ("", None),
        (None, None),
    ],
)
def test_largest_srcset_candidate(srcset: str | None, largest: str | None) -> None:
    assert largest_candidate(srcset) == largest


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("http://example.org/a?b=2&a=1#frag", "http://example.org/a?a=1&b=2"),
        ("https://example.org/p?id=3&sid=abc&PHPSESSID=x", "https://example.org/p?id=3"),
        ("http://example.org/page;jsessionid=ABC123", "http://example.org/page"),
        ("  http://example.org/  ", "http://example.org/"),
        ("HTTP://Example.ORG/a/../b/./c", "http://example.org/b/c"),
        ("http://example.org", "http://example.org/"),
        ("http://example.org:80/%7euser/x y", "http://example.org:80/~user/x%20y"),
        ("data:image/gif;base64,R0lGOD", None),
        ("javascript:alert(1)", None),
        ("mailto:a@example.org", None),
        ("ftp://example.org/x.jpg", None),
        ("http:///no-host", None),
        ("http://example.org/" + "x" * 3000, None),
    ],
)
def test_normalise_url(url: str, normal: str | None) -> None:
    assert normalise_url(url) == normal


def test_page_contents_finds_every_image_form_once() -> None:
    body = b"""<html><head><title> A   title </title>
      <base href="https://cdn.example.net/base/">
      <meta property="og:image" content="/og.jpg"><meta name="twitter:image" content="tw.png">
      </head><body>
      <img src="plain.jpg" alt="first"><img src="plain.jpg" alt="again">
      <img src="s.jpg" srcset="s.jpg 1x, l.jpg 2x">
      <picture><source data-srcset="p1.webp 1x, p2.webp 2x"><source srcset="p3.avif">
        <img data-src="lazy.jpg"></picture>
      <img data-original="orig.gif"><img src="data:image/png;base64,AAAA">
      <a href="photo.JPG">photo</a><a href="next.html">next</a><a href="#top">top</a>
    </body></html>"""
    page = page_contents(
        HtmlResponse("https://example.org/dir/page", body=body), max_links=10, max_images=10
    )
    base = "https://cdn.example.net/base/"
    assert page.title == "A title"
    assert set(page.images) == {
        ImageRef("https://cdn.example.net/og.jpg", None),
        ImageRef(f"{base}tw.png", None),
        ImageRef(f"{base}plain.jpg", "first"),
        ImageRef(f"{base}s.jpg", None),
        ImageRef(f"{base}l.jpg", None),
        ImageRef(f"{base}p2.webp", None),
        ImageRef(f"{base}p3.avif", None),
        ImageRef(f"{base}lazy.jpg", None),
        ImageRef(f"{base}orig.gif", None),
        ImageRef(f"{base}photo.JPG", "photo"),
    }
    assert page.links == [f"{base}next.html", f"{base}"]


def test_links_and_images_past_the_caps_are_counted_not_kept() -> None:
    body = "".join(f'<a href="/p{n}">p</a><img src="/i{n}.jpg">' for n in range(10))
    body += '<img src="/i0.jpg">' * 100  # one image named again and again is one image
    page = page_contents(
        HtmlResponse("https://example.org/", body=body.encode()), max_links=3, max_images=4
    )
    assert page.links == [f"https://example.org/p{n}" for n in range(3)]
    assert [image.url for image in page.images] == [
        f"https://example.org/i{n}.jpg" for n in range(4)
    ]
    assert (page.dropped_links, page.dropped_images) == (7, 6)


def test_a_link_keeps_its_own_text_however_much_markup_it_holds() -> None:
    """The parsed tree is pruned every 64 KiB, inside an open <a> too."""
    body = '<a href="/photo.jpg">own text' + "<b>x</b>" * 30_000 + "</a>"
    page = page_contents(
        HtmlResponse("https://example.org/", body=body.encode()), max_links=10, max_images=10
    )
    (image,) = page.images
    assert image.url == "https://example.org/photo.jpg"
    assert image.alt_text is not None and image.alt_text.startswith("own textxx")


@pytest.mark.parametrize(
    ("head", "stored"),
    [
        ('<link rel="canonical" href="/">', "http://site.test/"),
        (
            '<link rel="Canonical" href="http://site.test/?b=2&a=1#top">',
            "http://site.test/?a=1&b=2",
        ),
        ('<link rel="canonical" href="https://site.test/">', "http://site.test/index.html"),
        ('<link rel="canonical" href="http://other.test/">', "http://site.test/index.html"),
        ('<link rel="canonical" href="javascript:alert(1)">', "http://site.test/index.html"),
        ('<link rel="alternate" href="/">', "http://site.test/index.html"),
        ("", "http://site.test/index.html"),
    ],
)
def test_a_page_is_stored_under_its_canonical_url_on_the_same_site(head: str, stored: str):
    body = f"<html><head>{head}</head><body></body></html>".encode()
    page = page_contents(
        HtmlResponse("http://site.test/index.html", body=body), max_links=10, max_images=10
    )
    assert page.page_url == stored
