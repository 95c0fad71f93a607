"""Today's image formats: AVIF, HEIC/HEIF and TIFF (first page), everywhere bytes come in.

The tests make their own files with Pillow and pillow-heif, then index, upload, search by URL
and crawl them; a file declaring more pixels than the limit is refused before decoding.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from lookalike.fingerprint import IMAGE_MEDIA_TYPES, ImageRejected, fingerprint
from tests.crawl_site import Resource, Site, html, run_crawl
from tests.images import encode, photo
from tests.test_cli import run
from tests.web_support import ImageServer, Route, running_app

PHOTO = photo(21, (400, 300))
JPEG_DHASH = fingerprint(encode(PHOTO, "JPEG", quality=95)).hashes["dhash"]


def _multipage_tiff() -> bytes:
    """The photo, then an unrelated second page: only the first counts. JPEG-compressed, to
    stay under the site's 64 kB form memory limit, which Werkzeug applies to file parts too."""
    second = photo(22, (400, 300))
    return encode(PHOTO, "TIFF", save_all=True, append_images=[second], compression="jpeg")


FILES = {
    "photo.avif": ("AVIF", encode(PHOTO, "AVIF", quality=80)),
    "photo.heic": ("HEIF", encode(PHOTO, "HEIF", quality=80)),
    "scan.tiff": ("TIFF", _multipage_tiff()),
}
MEDIA_TYPES = {"AVIF": "image/avif", "HEIF": "image/heic", "TIFF": "image/tiff"}


@pytest.mark.parametrize("name", FILES)
def test_each_format_fingerprints_like_the_same_photo_as_jpeg(name: str) -> None:
    fmt, data = FILES[name]
    fp = fingerprint(data, with_thumbnail=True)
    assert (fp.format, fp.width, fp.height) == (fmt, 400, 300)
    assert bin(fp.hashes["dhash"] ^ JPEG_DHASH).count("1") <= 2
    assert Image.open(io.BytesIO(fp.thumbnail)).format == "WEBP"


def _tiff_declaring(width: int, height: int) -> bytes:
    """A valid tiny TIFF whose ImageWidth/ImageLength tags claim ``width``×``height``."""
    data = bytearray(encode(photo(1, (8, 8)), "TIFF"))
    ifd = struct.unpack_from("<I", data, 4)[0]
    for entry in range(struct.unpack_from("<H", data, ifd)[0]):
        offset = ifd + 2 + 12 * entry
        tag = struct.unpack_from("<H", data, offset)[0]
        if tag in (256, 257):  # ImageWidth, ImageLength, rewritten as LONGs
            struct.pack_into("<HHII", data, offset, tag, 4, 1, width if tag == 256 else height)
    return bytes(data)


def _iso_declaring(fmt: str, width: int, height: int) -> bytes:
    """A tiny AVIF or HEIF whose 'ispe' (image spatial extents) box claims ``width``×``height``."""
    data = bytearray(encode(photo(1, (64, 64)), fmt))
    box = data.index(b"ispe")
    struct.pack_into(">II", data, box + 8, width, height)  # after the version and flags
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        _tiff_declaring(30000, 30000),
        _iso_declaring("HEIF", 9000, 9000),
        _iso_declaring("AVIF", 9000, 9000),
    ],
    ids=["TIFF", "HEIF", "AVIF"],
)
def test_a_declared_size_over_the_pixel_limit_is_refused_before_decoding(data: bytes) -> None:
    side = "30000" if data.startswith(b"II") else "9000"
    with pytest.raises(ImageRejected, match=f"image too large: {side}×{side} px"):
        fingerprint(data)


def test_index_takes_every_format(cli_env: dict[str, str], tmp_path: Path) -> None:
    for name, (_, data) in FILES.items():
        (tmp_path / name).write_bytes(data)
    indexed = run(cli_env, "index", str(tmp_path))
    assert indexed.stdout.startswith("indexed 3 files (3 new images, "), indexed.stderr
    found = run(cli_env, "search", "--max-distance", "2", str(tmp_path / "photo.heic"))
    assert sorted(Path(line.split()[2]).name for line in found.stdout.splitlines()[1:]) == [
        "photo.avif",
        "photo.heic",
        "scan.tiff",
    ]


def test_upload_and_search_by_url_take_every_format(database_url: str) -> None:
    routes = {f"/{name}": Route(body=data) for name, (_, data) in FILES.items()}
    with (
        ImageServer(routes) as server,
        running_app(database_url, FETCH_ALLOWED_ADDRESSES=["127.0.0.1"]) as app,
    ):
        client = app.test_client()
        for name, (fmt, data) in FILES.items():
            uploaded = client.post("/api/search", data={"image": (io.BytesIO(data), name)})
            fetched = client.post("/api/search", json={"url": server.url(f"/{name}")})
            for response in (uploaded, fetched):
                assert response.status_code == 200, response.get_json()
                assert response.get_json()["query"]["format"] == fmt
        home = client.get("/").get_data(as_text=True)
    assert f'accept="{",".join(IMAGE_MEDIA_TYPES)}"' in home


def test_the_crawler_asks_for_and_records_every_format(cli_env: dict[str, str]) -> None:
    shown = "".join(f'<img src="/{name}">' for name in FILES)
    routes = {"/": html(shown, "formats")} | {
        f"/{name}": Resource(data, content_type=MEDIA_TYPES[fmt])
        for name, (fmt, data) in FILES.items()
    }
    with Site(routes) as site:
        result = run_crawl(cli_env, site.url("/"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "crawl 1 finished: 1 page, 3 images (3 new), 3 new sightings" in result.stdout
    for name, (fmt, _) in FILES.items():
        assert MEDIA_TYPES[fmt] in site.accepts[f"/{name}"].split(",")
    with psycopg.connect(cli_env["DATABASE_URL"]) as conn:
        formats = conn.execute("SELECT format FROM images ORDER BY format").fetchall()
    assert formats == [("AVIF",), ("HEIF",), ("TIFF",)]
