"""Sightings a batch of crawl results completes: which stored image appears on which page.

Sightings need both a page (which image URLs it uses) and the fetched image (its
fingerprint); whichever arrives second completes the pair. One advisory lock per crawl makes
that join safe when several workers write at once (``crawler.frontier`` takes it).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from crawler.items import Batch, ImageDone
from lookalike.store import Sighting
from lookalike.store import images as stored_images


def sightings_of_new_images(
    conn: psycopg.Connection, crawl_id: int, images: Sequence[ImageDone]
) -> list[Sighting]:
    """Every page of the crawl known to use a freshly fetched image URL."""
    by_url = {image.request_url: image for image in images}
    if not by_url:
        return []
    rows = conn.execute(
        """
        SELECT image_url, page_url, page_title, alt_text FROM crawl_image_refs
        WHERE crawl_id = %s AND image_url = ANY(%s)
        """,
        (crawl_id, list(by_url)),
    ).fetchall()
    # A worker may fetch an image before the page that uses it is written (refs come later).
    rows += [(image.request_url, *image.referrer) for image in images if image.referrer]
    return [
        Sighting(
            fingerprint=by_url[image_url].fingerprint,
            image_url=image_url,
            page_url=page_url,
            page_title=title,
            alt_text=alt,
            seen_at=by_url[image_url].seen_at,
        )
        for image_url, page_url, title, alt in rows
    ]


def sightings_of_new_pages(conn: psycopg.Connection, crawl_id: int, batch: Batch) -> list[Sighting]:
    """Images on this batch's pages that an earlier batch already fetched and stored."""
    in_batch = {image.request_url for image in batch.images}
    wanted = {url for page in batch.pages for url, _ in page.images if url not in in_batch}
    if not wanted:
        return []
    rows = conn.execute(
        """
        SELECT r.url, i.id
        FROM crawl_requests r JOIN images i ON i.sha256 = r.sha256
        WHERE r.crawl_id = %s AND r.url = ANY(%s) AND r.done_at IS NOT NULL
        """,
        (crawl_id, sorted(wanted)),
    ).fetchall()
    fingerprints = stored_images.fingerprints_by_id(conn, [image_id for _, image_id in rows])
    stored = {url: fingerprints[image_id] for url, image_id in rows}
    return [
        Sighting(
            fingerprint=stored[url],
            image_url=url,
            page_url=page.page_url,
            page_title=page.title,
            alt_text=alt,
            seen_at=page.seen_at,
        )
        for page in batch.pages
        for url, alt in page.images
        if url in stored
    ]
