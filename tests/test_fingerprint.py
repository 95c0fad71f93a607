"""The one decode-and-hash path: agreement with imagehash, and every rejection."""

from __future__ import annotations

import io
import time
import zlib

import imagehash
import numpy as np
import pytest
from PIL import Image

from lookalike.fingerprint import ImageRejected, Rejection, fingerprint
from lookalike.hashes import hamming, hash_from_hex, hash_to_hex, to_bigint
from tests.images import (
    CORRUPT_PNGS,
    declared_png,
    encode,
    jpeg_of_endless_scans,
    photo,
    png_with_empty_chunks,
    png_with_tiny_idat,
    rejected_samples,
    rle8_bmp,
)


def test_dhash_is_imagehash_dhash_in_its_hex_form() -> None:
    image = photo(1)
    fp = fingerprint(encode(image, "PNG"))
    assert fp.hex("dhash") == str(imagehash.dhash(image))
    assert fp.hex("phash") == str(imagehash.phash(image))
    assert (fp.width, fp.height, fp.format) == (640, 480, "PNG")
    assert len(fp.sha256) == 64


def test_large_jpeg_draft_decode_stays_within_a_bit_or_two_of_a_full_decode() -> None:
    data = encode(photo(2, (3000, 2000)), "JPEG", quality=90)
    full = int(str(imagehash.dhash(Image.open(io.BytesIO(data)))), 16)
    fp = fingerprint(data)
    assert (fp.width, fp.height) == (3000, 2000)  # the original size, not the draft's
    assert hamming(fp.hashes["dhash"], full) <= 2


def test_exif_orientation_is_applied() -> None:
    upright = photo(3)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned left...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with "rotate 90° clockwise to display"
    rotated = fingerprint(encode(sideways, "PNG", exif=exif))
    assert rotated.hashes["dhash"] == fingerprint(encode(upright, "PNG")).hashes["dhash"]
    assert (rotated.width, rotated.height) == upright.size  # as displayed


def test_transparency_is_flattened_onto_white() -> None:
    base = photo(4).convert("RGBA")
    base.paste((0, 0, 0, 0), (100, 100, 400, 300))  # transparent black hole
    on_white = base.copy()
    on_white.paste((255, 255, 255, 255), (100, 100, 400, 300))
    assert (
        fingerprint(encode(base, "PNG")).hashes["dhash"]
        == fingerprint(encode(on_white, "PNG")).hashes["dhash"]
    )
    assert (
        fingerprint(encode(base, "PNG")).hashes["dhash"]
        != fingerprint(encode(base.convert("RGB"), "PNG")).hashes["dhash"]
    )


def test_animation_hashes_its_first_frame_only() -> None:
    frames = [photo(seed, (120, 90)) for seed in (5, 6, 7)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40)
    first_only = encode(frames[0], "GIF")
    assert fingerprint(buffer.getvalue()).hashes["dhash"] == fingerprint(first_only).hashes["dhash"]


def test_thumbnail_comes_from_the_same_decode_when_asked_for() -> None:
    fp = fingerprint(encode(photo(8), "JPEG"), with_thumbnail=True)
    assert fp.thumbnail is not None
    thumb = Image.open(io.BytesIO(fp.thumbnail))
    assert thumb.format == "WEBP"
    assert max(thumb.size) == 160
    assert fingerprint(encode(photo(8), "JPEG")).thumbnail is None


def test_asking_for_a_thumbnail_never_changes_the_hashes() -> None:
    data = encode(photo(11, (2400, 1800)), "JPEG")
    with_thumb, without = fingerprint(data, with_thumbnail=True), fingerprint(data)
    assert (with_thumb.hashes["dhash"], with_thumb.hashes["phash"]) == (
        without.hashes["dhash"],
        without.hashes["phash"],
    )


def _many_frame_gif(frames: int) -> bytes:
    images = [Image.new("P", (16, 16), i % 256) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


REJECTIONS = {
    "empty file": (b"", "empty file"),
    "random bytes": (bytes(range(256)) * 40, "not an image"),
    "html": (b"<!DOCTYPE html><html><body>hi</body></html>", "not an image: HTML document"),
    "svg": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "unsupported format: SVG",
    ),
    "pdf": (b"%PDF-1.7\n...", "unsupported format: PDF"),
    "eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n", "unsupported format: EPS"),
    "bomb png": (png_with_tiny_idat(30000, 30000), "image too large: 30000×30000 px (limit 50 MP)"),
}


@pytest.mark.parametrize(("data", "reason"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_rejections_say_why_in_one_line(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as raised:
        fingerprint(data)
    assert str(raised.value) == reason


def test_truncated_jpeg_is_rejected_not_half_hashed() -> None:
    data = encode(photo(9, (800, 600)), "JPEG")
    with pytest.raises(ImageRejected, match=r"^truncated or corrupt image: ") as raised:
        fingerprint(data[: len(data) // 2])
    assert "\n" not in str(raised.value)


def test_pixel_limit_is_configurable_and_checked_before_decoding() -> None:
    data = encode(photo(10, (400, 300)), "PNG")
    with pytest.raises(ImageRejected, match=r"image too large: 400×300 px \(limit 0.1 MP\)"):
        fingerprint(data, max_pixels=100_000)


def test_a_3000_frame_gif_is_hashed_from_its_first_frame() -> None:
    fp = fingerprint(_many_frame_gif(3000))
    assert (
        fp.hashes["dhash"]
        == fingerprint(encode(Image.new("P", (16, 16), 0), "GIF")).hashes["dhash"]
    )


def test_hash_spellings_round_trip() -> None:
    value = 0xFEDCBA9876543210
    assert hash_from_hex(hash_to_hex(value)) == value
    assert to_bigint(value) < 0
    assert hamming(to_bigint(value), value) == 0
    with pytest.raises(ValueError, match="expected 16 hex digits"):
        hash_from_hex("xyz")


EXTREME_SIDES = [(50_000_000, 1), (2, 25_000_000), (1, 2_000_000)]


@pytest.mark.parametrize("size", EXTREME_SIDES, ids=[f"{w}x{h}" for w, h in EXTREME_SIDES])
def test_a_side_over_65535_px_is_rejected_before_decoding(size: tuple[int, int]) -> None:
    # Inside the pixel limit, but the resize matrices grow with the long side (gigabytes).
    width, height = size
    with pytest.raises(ImageRejected) as raised:
        fingerprint(declared_png(width, height, idat=zlib.compress(b"")), with_thumbnail=True)
    assert str(raised.value) == f"image too long: {width}×{height} px (limit 65535 px a side)"


def test_the_longest_side_allowed_is_hashed_with_its_thumbnail() -> None:
    fp = fingerprint(declared_png(65535, 2), with_thumbnail=True)
    assert (fp.width, fp.height) == (65535, 2)
    assert Image.open(io.BytesIO(fp.thumbnail)).size == (160, 1)


@pytest.mark.parametrize("data", CORRUPT_PNGS.values(), ids=CORRUPT_PNGS.keys())
@pytest.mark.parametrize("thumbnail", [False, True], ids=["hash", "hash+thumbnail"])
def test_corrupt_pixel_data_is_rejected_in_one_line_wherever_it_fails(
    data: bytes, thumbnail: bool
) -> None:
    with pytest.raises(ImageRejected, match=r"^truncated or corrupt image: [^\n]+$"):
        fingerprint(data, with_thumbnail=thumbnail)


def test_a_large_png_turned_by_exif_is_hashed_upright() -> None:
    # The orientation is applied to the grayscale plane, not to a copy of the decoded image.
    upright = photo(14, (900, 600))
    exif = Image.Exif()
    exif[0x0112] = 8
    turned = encode(upright.transpose(Image.Transpose.ROTATE_270), "PNG", exif=exif)
    fp = fingerprint(turned, with_thumbnail=True)
    assert fp.hashes["dhash"] == fingerprint(encode(upright, "PNG")).hashes["dhash"]
    assert (fp.width, fp.height) == (900, 600)
    assert Image.open(io.BytesIO(fp.thumbnail)).size == (160, 107)


def _sixteen_bit(gray: Image.Image) -> Image.Image:
    """The same picture with 16 bits a sample (each 8-bit value v becomes v × 257)."""
    return Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)


def test_a_16_bit_grayscale_png_hashes_like_its_8_bit_copy() -> None:
    # Pillow's own 16-to-8-bit conversion clips to white: every such PNG hashed 0000000000000000.
    gray = photo(15).convert("L")
    wide = fingerprint(encode(_sixteen_bit(gray), "PNG"), with_thumbnail=True)
    narrow = fingerprint(encode(gray, "PNG"), with_thumbnail=True)
    assert (
        (wide.hashes["dhash"], wide.hashes["phash"])
        == (narrow.hashes["dhash"], narrow.hashes["phash"])
        != (0, 0)
    )
    assert wide.thumbnail == narrow.thumbnail


def test_a_16_bit_grayscale_png_keeps_its_transparent_colour_white() -> None:
    gray = photo(16).convert("L")
    key = int(np.asarray(gray)[0, 0])
    wide = encode(_sixteen_bit(gray), "PNG", transparency=key * 257)
    assert (
        fingerprint(wide).hashes["dhash"]
        == fingerprint(encode(gray, "PNG", transparency=key)).hashes["dhash"]
    )


def test_a_progressive_jpeg_of_endless_empty_scans_is_refused_before_decoding() -> None:
    started = time.monotonic()
    with pytest.raises(ImageRejected, match=r"^too many JPEG scans: 2010 \(limit 100\)$"):
        fingerprint(jpeg_of_endless_scans(2000))
    assert time.monotonic() - started < 1
    assert fingerprint(jpeg_of_endless_scans(0)).width == 4000  # its 10 scans are fine


def test_an_rle_bmp_over_2_mb_is_refused_before_pillow_decodes_it_in_python() -> None:
    one_pixel_runs = rle8_bmp(7000, 7000, b"\x01\x05" * 1_200_000)  # 2.4 MB: 1 s of Python
    started = time.monotonic()
    with pytest.raises(ImageRejected, match=r"^RLE-compressed BMP too large: 2,401,080 bytes"):
        fingerprint(one_pixel_runs)
    assert time.monotonic() - started < 0.2
    # Four runs of 250 gray pixels and an end of line per row: a real RLE8 picture decodes.
    rows = b"".join(bytes((250, y % 256) * 4) + b"\0\0" for y in range(1000))
    assert fingerprint(rle8_bmp(1000, 1000, rows)).format == "BMP"


def test_a_png_of_over_100000_chunks_is_refused_before_pillow_reads_them() -> None:
    # Pillow reads chunks one by one in Python: 1.7 million empty ones (20 MB) took 4.8 s.
    started = time.monotonic()
    with pytest.raises(ImageRejected, match=r"^too many PNG chunks: over 100,000$"):
        fingerprint(png_with_empty_chunks(1_600_000))
    assert time.monotonic() - started < 0.5
    assert (
        fingerprint(png_with_empty_chunks(99_990)).hashes["dhash"]
        == fingerprint(png_with_empty_chunks(0)).hashes["dhash"]
    )


@pytest.mark.parametrize("kind", rejected_samples())
def test_each_rejection_carries_its_kind_and_says_its_label_first(kind: Rejection) -> None:
    with pytest.raises(ImageRejected) as raised:
        fingerprint(rejected_samples()[kind])
    assert raised.value.kind is kind
    assert str(raised.value).split(":")[0] == kind.value
