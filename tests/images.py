"""Images made by the tests themselves, so the suite runs on any machine.

``photo(seed)`` draws a deterministic picture with smooth gradients and shapes: different seeds
give unrelated pictures (dHashes ~32 bits apart), like different photos would.
``textured_photo(seed)`` is busy with small sharp shapes instead, so it has the corners local
features need (ORB keeps its strongest); the robust tests edit it.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lookalike.fingerprint import Rejection


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    rng = random.Random(seed)
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image = image.rotate(rng.uniform(0, 360), expand=False, fillcolor=_colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.uniform(-0.2, 1) * width, rng.uniform(-0.2, 1) * height
        w, h = rng.uniform(0.1, 0.6) * width, rng.uniform(0.1, 0.6) * height
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=_colour(rng))
    return image.filter(ImageFilter.GaussianBlur(radius=max(1, width // 200)))


def textured_photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size, _colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(300):
        x, y, reach = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 40)
        spread = [rng.uniform(-reach, reach) for _ in range(2 * rng.randint(3, 5))]
        draw.polygon(
            [(x + dx, y + dy) for dx, dy in zip(spread[::2], spread[1::2], strict=True)],
            fill=_colour(rng),
        )
    return image


def flat_picture(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A grey gradient and one soft disc, like a plain graphic: no corners, so no local
    features, and no row or column as white or black as a frame."""
    width, height = size
    gradient = Image.linear_gradient("L").resize(size).point(lambda v: 60 + v * 140 // 255)
    image = gradient.convert("RGB")
    rng = random.Random(seed)
    left, top = rng.uniform(0.1, 0.4) * width, rng.uniform(0.1, 0.3) * height
    ImageDraw.Draw(image).ellipse(
        (left, top, left + width / 2, top + height * 2 / 3), fill=_colour(rng)
    )
    return image.filter(ImageFilter.GaussianBlur(radius=width / 160))


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def declared_png(
    width: int,
    height: int,
    *,
    colour_type: int = 0,
    bit_depth: int = 8,
    idat: bytes | None = None,
    extra_chunks: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A PNG written chunk by chunk, so it can declare any size and carry any pixel data.

    Without ``idat`` every row is a gradient of bytes, compressed as a stream (a 49 MP image
    stays a few hundred KB and is never held uncompressed). ``extra_chunks`` go before IDAT.
    """
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    if idat is None:
        idat = _gradient_rows(width * _PNG_CHANNELS[colour_type] * bit_depth // 8, height)
    chunks = [(b"IHDR", header), *extra_chunks, (b"IDAT", idat), (b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(png_chunk(kind, body) for kind, body in chunks)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: gray, RGB, palette, LA, RGBA


def _gradient_rows(row_bytes: int, rows: int) -> bytes:
    row = b"\0" + (bytes(range(256)) * (row_bytes // 256 + 1))[:row_bytes]  # filter 0: none
    per_batch = max(1, (1 << 20) // len(row))  # compress about 1 MB at a time
    stream = zlib.compressobj(9)
    batches = [
        stream.compress(row * min(per_batch, rows - done)) for done in range(0, rows, per_batch)
    ]
    return b"".join(batches) + stream.flush()


def png_with_tiny_idat(width: int, height: int) -> bytes:
    """Declares width×height RGB but carries 64 bytes of pixel data: a decompression bomb."""
    return declared_png(width, height, colour_type=2, idat=zlib.compress(b"\0" * 64))


def _png_with_idat_cut_in_half() -> bytes:
    whole = encode(photo(12, (300, 200)), "PNG")
    idat = whole.index(b"IDAT") - 4
    return whole[: idat + (len(whole) - idat) // 2] + whole[-12:]  # IEND kept


# PNGs that open (the header is sound) and fail while their pixels are decoded.
CORRUPT_PNGS = {
    "IDAT cut in half": _png_with_idat_cut_in_half(),
    "corrupt zlib stream": declared_png(100, 100, colour_type=2, idat=b"\x78\x9c" + b"\xff" * 200),
    "1000x1000 with a 64-byte IDAT": png_with_tiny_idat(1000, 1000),
    "file cut in half": encode(photo(13), "PNG")[:20000],
}


def rle8_bmp(width: int, height: int, runs: bytes) -> bytes:
    """A gray-palette 8-bit BMP whose pixel data is ``runs``: RLE8 codes, end of file added."""
    header = struct.pack("<2sIHHI", b"BM", 0, 0, 0, 54 + 1024)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, 0, 0, 0, 256, 0)
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    return header + info + palette + runs + b"\0\1"


def noisy_jpeg(seed: int, size: tuple[int, int], quality: int = 90) -> bytes:
    """A photo with sensor-like noise: its JPEG bytes are dense in CR and LF, as real photos are."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(photo(seed, size), dtype=np.int16)
    pixels += rng.integers(-40, 41, pixels.shape, dtype=np.int16)
    return encode(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), "JPEG", quality=quality)


def jpeg_of_endless_scans(scans: int) -> bytes:
    """A 16 MP progressive JPEG with ``scans`` more empty scans (31 bytes each) before its end:
    each makes libjpeg walk every block; 2,000 of them in 156 kB took 15 s to decode."""
    data = encode(Image.new("RGB", (4000, 4000), "gray"), "JPEG", progressive=True)
    last_scan = data[data.rindex(b"\xff\xda") : -2]
    return data[:-2] + last_scan * scans + data[-2:]


def png_with_empty_chunks(chunks: int) -> bytes:
    """A small photo's PNG with ``chunks`` empty ancillary chunks after its header."""
    small = encode(photo(17, (64, 48)), "PNG")
    header_end = 8 + 25  # signature and IHDR
    return small[:header_end] + png_chunk(b"zzZz", b"") * chunks + small[header_end:]


@cache
def rejected_samples() -> dict[Rejection, bytes]:
    """A file of every kind of rejection that bytes alone can earn (at the default limits).

    ``EMPTY_IMAGE`` is left out: the PNG, GIF, BMP and TIFF files with a 0-pixel side tried
    were refused as they opened ("not an image"), so no sample earns it.
    """
    return {
        Rejection.EMPTY_FILE: b"",
        Rejection.NOT_AN_IMAGE: b"<!doctype html><html><title>x</title></html>",
        Rejection.UNSUPPORTED_FORMAT: b'<svg xmlns="http://www.w3.org/2000/svg"></svg>',
        Rejection.CORRUPT: b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64,
        Rejection.TRUNCATED_OR_CORRUPT: encode(photo(9, (800, 600)), "JPEG")[:2000],
        Rejection.TOO_LARGE: declared_png(8000, 8000),
        Rejection.TOO_LONG: declared_png(1, 2_000_000),
        Rejection.TOO_MANY_JPEG_SCANS: jpeg_of_endless_scans(200),
        Rejection.RLE_BMP_TOO_LARGE: rle8_bmp(7000, 7000, b"\x01\x05" * 1_200_000),
        Rejection.TOO_MANY_PNG_CHUNKS: png_with_empty_chunks(100_001),
    }


def scene(
    seed: int,
    size: tuple[int, int] = (640, 480),
    *,
    moved: float = 0.0,
    step_aside: float = 0.0,
) -> Image.Image:
    """A busy photo-like picture: a smooth backdrop and 150 small shapes, corners for ORB.

    ``moved`` shifts every shape by up to that share of the picture (same seed, same shapes
    and colours): another shot of the same things, not a copy of the first. ``step_aside``
    is a shot from a step to the left: the nearer half of the shapes moves right by that
    share of the width, the farther half stays (parallax, as in a stereo pair).
    """
    rng = random.Random(seed)
    jitter = random.Random(seed + 1_000_003)
    depth = random.Random(seed + 2_000_003)
    image = photo(seed, size)
    draw = ImageDraw.Draw(image)
    width, height = size
    for _ in range(150):
        x, y = rng.uniform(0, 1) * width, rng.uniform(0, 1) * height
        x += jitter.uniform(-moved, moved) * width
        y += jitter.uniform(-moved, moved) * height
        if depth.random() < 0.5:
            x += step_aside * width
        side = rng.uniform(0.01, 0.06) * width
        points = [(x + rng.uniform(-side, side), y + rng.uniform(-side, side)) for _ in range(3)]
        draw.polygon(points, fill=_colour(rng))
    return image
