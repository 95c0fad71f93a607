"""One decode-and-hash path for every caller: crawler, CLI and web site.

If two callers decoded differently, the same picture would get two hashes and search would
silently miss it, so everything that turns bytes into a fingerprint goes through here.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lookalike import frames, kinds
from lookalike.features import orb
from lookalike.features.query import QueryDescription, describe
from lookalike.memory import MemoryBudget, return_freed_memory
from lookalike.wording import first_line

# HEIC/HEIF (phone photos) through libheif; Pillow itself opens AVIF. TIFF: the first page.
pillow_heif.register_heif_opener()
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "AVIF", "HEIF", "TIFF")
# What HTTP clients ask servers for (the crawler's image requests): the formats above.
IMAGE_MEDIA_TYPES = (
    "image/avif",
    "image/heic",
    "image/heif",
    "image/webp",
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/bmp",
    "image/tiff",
)
DEFAULT_MAX_PIXELS = 50_000_000
# The largest side a JPEG, GIF or WebP can have. Work that grows with a side (the resize
# matrices) stays bounded even for a 50 MP picture one pixel high, which PNG and BMP allow.
MAX_SIDE = 65_535
# Encoders write about 10 scans to a progressive JPEG; each one costs a pass over the image.
MAX_JPEG_SCANS = 100
MAX_RLE_BMP_BYTES = 2_000_000  # Pillow's RLE decoder is Python: ~0.8 s at this size
# Encoders split the pixel data into chunks of 8 kB or more (2,500 for 20 MB); Pillow reads
# each chunk in Python, ~3 µs apiece.
MAX_PNG_CHUNKS = 100_000
THUMBNAIL_MAX_SIDE = 160
# libwebp's effort, 0-6: 2 encodes a thumbnail in about half the time of the default 4 for a
# few percent more bytes (docs/benchmarks.md, bench crawl), paid once an image crawled.
THUMBNAIL_WEBP_METHOD = 2
# JPEG draft decoding scales by 1/2, 1/4 or 1/8 inside the decoder. Keeping the reduced short
# side at or above this keeps dHash within a fraction of a bit of a full decode on average.
DRAFT_MIN_SHORT_SIDE = 256

# Pillow decides "bomb or not" with a global that only warns below twice its value; we check
# the declared size ourselves before decoding, so Pillow's own check is switched off.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False
_EXIF_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)  # orientations that swap width and height
# What Pillow raises on bad pixel data, depending on the format and where decoding stops.
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
_PEAK_BYTES_PER_PIXEL = 6
_WEBP_EXTRA_BYTES_PER_PIXEL = 10
_FIXED_COST_BYTES = 48 * 1024 * 1024
_TRIM_AFTER_BYTES = 64 * 1024 * 1024
_WIDE_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # how Pillow opens 16-bit grayscale
_STRIP_PIXELS = 1 << 20  # pixels of the source per thumbnail strip: 4 MB in RGBA

# Leading bytes of formats people commonly mistake for images we accept, so the rejection can
# name the format instead of saying only "not an image".
_KNOWN_SIGNATURES = (
    (b"%PDF", "PDF"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
)

# ISO media brands of the still-image formats above (ISO/IEC 23008-12, AV1 image format).
_STILL_IMAGE_BRANDS = {
    "AVIF": "AVIF",
    "AVIS": "AVIF",
    "HEIC": "HEIF",
    "HEIX": "HEIF",
    "MIF1": "HEIF",
    "MSF1": "HEIF",
}


class Rejection(StrEnum):
    """Why there is no fingerprint; each value is the label people see before any details.

    Programs decide by the kind (the site's status, the crawler's counters, the indexer's
    summary), never by parsing the message. The last two are about reading a file.
    """

    EMPTY_FILE = "empty file"
    NOT_AN_IMAGE = "not an image"
    UNSUPPORTED_FORMAT = "unsupported format"
    CORRUPT = "corrupt image"
    TRUNCATED_OR_CORRUPT = "truncated or corrupt image"
    TOO_LARGE = "image too large"
    TOO_LONG = "image too long"
    EMPTY_IMAGE = "empty image"
    TOO_MANY_JPEG_SCANS = "too many JPEG scans"
    RLE_BMP_TOO_LARGE = "RLE-compressed BMP too large"
    TOO_MANY_PNG_CHUNKS = "too many PNG chunks"
    NO_SUCH_FILE = "no such file or directory"
    UNREADABLE = "unreadable"


class ImageRejected(ValueError):
    """The bytes cannot be fingerprinted: ``kind`` says why, ``str(error)`` says it in one line
    for a person ("image too large: 400×300 px (limit 0.1 MP)")."""

    def __init__(self, kind: Rejection, detail: str | None = None) -> None:
        super().__init__(kind, detail)  # both in args: the error pickles across processes
        self.kind = kind
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else str(self.kind)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What Lookalike records about one distinct image content.

    ``hashes`` maps each registered kind's name to its hash, an unsigned integer in
    imagehash's bit order, so ``kinds.get("dhash").to_hex(fp.hashes["dhash"])`` equals
    ``str(imagehash.dhash(img))``.
    """

    sha256: str
    hashes: Mapping[str, int]
    width: int
    height: int
    format: str
    thumbnail: bytes | None = None  # small WebP, when asked for: shows what matched later
    features: bytes | None = None  # stored local features, when asked for (features.orb)
    picture_box: frames.Box | None = None  # where the picture sits in a plain frame, if framed
    query: QueryDescription | None = None  # what the robust search needs, when asked for

    def hex(self, kind: str) -> str:
        return kinds.get(kind).to_hex(self.hashes[kind])

    def to_dict(self) -> dict[str, object]:
        """The JSON form: sha256, one hex string per kind (``"dhash": "…"``), size, format."""
        hashes = {name: self.hex(name) for name in self.hashes}
        return {
            "sha256": self.sha256,
            **hashes,
            "width": self.width,
            "height": self.height,
            "format": self.format,
        }


def fingerprint(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    with_thumbnail: bool = False,
    with_features: bool = False,
    feature_limit: int = orb.STORED_FEATURES,
    as_query: bool = False,
    budget: MemoryBudget | None = None,
) -> Fingerprint:
    """Fingerprint encoded image bytes, or raise :class:`ImageRejected` saying why not.

    ``with_thumbnail`` adds a small colour WebP; ``with_features`` the ``feature_limit``
    strongest local features, to be stored; ``as_query`` what a robust search needs
    (:mod:`lookalike.features.query`). With a ``budget``, the decode first reserves the memory
    it may take (:func:`decode_cost`) and waits while other decodes hold it.
    """
    with _decoder_errors_rejected():
        _refuse_endless_png_chunks(data)
        image = open_image(data, max_pixels=max_pixels)
        _refuse_excessive_work(image, data)
        declared, fmt, colour_mode = image.size, image.format or "unknown", image.mode
        # The hashes only see luma, so JPEGs decode just that channel, at reduced scale. Every
        # caller gets this same decode, with or without a thumbnail, so hashes never diverge.
        _draft(image, "L", DRAFT_MIN_SHORT_SIDE)
        cost = decode_cost(image, declared)
    with budget.reserve(cost) if budget else nullcontext(), _memory_returned_after(cost):
        with _decoder_errors_rejected():
            orientation = _decode(image)
            lost_colour = image.mode == "L" and colour_mode != "L"  # the draft's luma only
            image = _eight_bit(image)
            thumbnail = None
            if with_thumbnail:
                colour = _decode_colour(data, max_pixels) if lost_colour else image
                thumbnail = _thumbnail(colour, orientation)
                del colour
            gray = _gray_pixels(image, orientation)  # closes image: its pixels are done
        hashes = kinds.compute_all(gray)
        picture_box = frames.picture_box(gray)
        width, height = declared[::-1] if orientation in _TURNED else declared
        features = orb.extract(gray, feature_limit).to_bytes() if with_features else None
        query = describe(gray, (width, height), hashes) if as_query else None
        del gray  # before the memory is handed back
    return Fingerprint(
        sha256=hashlib.sha256(data).hexdigest(),
        hashes=hashes,
        width=width,
        height=height,
        format=fmt,
        thumbnail=thumbnail,
        features=features,
        picture_box=picture_box,
        query=query,
    )


def decode_cost(image: Image.Image, declared: tuple[int, int]) -> int:
    """Bytes that decoding ``image`` at its (drafted) size may take at the peak.

    Pillow holds every multi-band mode at 4 bytes a pixel; flattening alpha adds a grayscale
    and an alpha plane (1 byte each) before the decoded image is let go, so 6 bytes a pixel
    cover every mode. The resize matrices and the thumbnail's strips add a few MB. Pillow
    decodes every WebP through libwebp's animation decoder, which keeps two RGBA canvases and
    hands over a copy of the frame: 10 bytes a pixel more (a 36-byte 25 MP WebP took 369 MB).
    A progressive JPEG keeps every DCT coefficient of its ``declared`` size until its last
    scan (2 bytes each, per component), whatever scale it is drafted to.
    """
    per_pixel = _PEAK_BYTES_PER_PIXEL
    if image.format == "WEBP":
        per_pixel += _WEBP_EXTRA_BYTES_PER_PIXEL
    cost = image.width * image.height * per_pixel + _FIXED_COST_BYTES
    if image.format == "JPEG" and image.info.get("progressive"):
        cost += declared[0] * declared[1] * image.layers * 2
    return cost


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Identify the bytes and check the declared size, without decoding any pixels yet."""
    if not data:
        raise ImageRejected(Rejection.EMPTY_FILE)
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise _unsupported(data) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(Rejection.CORRUPT, first_line(error)) from None
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageRejected(
            Rejection.TOO_LARGE,
            f"{image.width}×{image.height} px (limit {_megapixels(max_pixels)} MP)",
        )
    if max(image.size) > MAX_SIDE:
        raise ImageRejected(
            Rejection.TOO_LONG, f"{image.width}×{image.height} px (limit {MAX_SIDE} px a side)"
        )
    if pixels == 0:
        raise ImageRejected(Rejection.EMPTY_IMAGE, f"{image.width}×{image.height} px")
    return image


def _refuse_excessive_work(image: Image.Image, data: bytes) -> None:
    """Refuse files whose decoding time is out of proportion to their size.

    libjpeg walks every block of the image once per scan, and a progressive scan that only
    says "no more coefficients" takes a few bytes: a 156 kB JPEG with 2,000 of them took 15 s.
    Encoders write about 10; ``ff da`` cannot occur inside entropy-coded data (0xff is
    stuffed), so counting it counts the scans, plus any of embedded thumbnails or previews.
    Pillow decodes RLE-compressed BMP in Python, about 0.4 µs a byte with the GIL held: an
    18 MB one took 7.4 s and slowed every other thread.
    """
    if image.format == "JPEG" and (scans := data.count(b"\xff\xda")) > MAX_JPEG_SCANS:
        raise ImageRejected(Rejection.TOO_MANY_JPEG_SCANS, f"{scans} (limit {MAX_JPEG_SCANS})")
    if image.tile and image.tile[0].codec_name == "bmp_rle" and len(data) > MAX_RLE_BMP_BYTES:
        raise ImageRejected(
            Rejection.RLE_BMP_TOO_LARGE, f"{len(data):,} bytes (limit {MAX_RLE_BMP_BYTES:,})"
        )


def _refuse_endless_png_chunks(data: bytes) -> None:
    """Refuse a PNG of over MAX_PNG_CHUNKS chunks before Pillow opens it.

    Pillow reads chunks one by one in Python, all those before the pixel data while opening:
    20 MB of empty chunks took 4.8 s. This walk reads only their length fields.
    """
    if data.startswith(b"\x89PNG") and _more_png_chunks_than(data, MAX_PNG_CHUNKS):
        raise ImageRejected(Rejection.TOO_MANY_PNG_CHUNKS, f"over {MAX_PNG_CHUNKS:,}")


def _more_png_chunks_than(data: bytes, limit: int) -> bool:
    offset, chunks = 8, 0  # after the signature
    while offset + 8 <= len(data):
        chunks += 1
        if chunks > limit:
            return True
        offset += 12 + int.from_bytes(data[offset : offset + 4], "big")
    return False


@contextmanager
def _decoder_errors_rejected() -> Iterator[None]:
    """Turn what Pillow raises on bad pixel data into a rejection, wherever it surfaces.

    Pillow decodes lazily: a truncated or corrupt stream can fail in ``load``, in reading the
    EXIF (PNG keeps it after the pixels), in a conversion or in a resize, not only at open.
    """
    try:
        yield
    except ImageRejected:
        raise
    except _DECODER_ERRORS as error:
        raise ImageRejected(Rejection.TRUNCATED_OR_CORRUPT, first_line(error)) from None


@contextmanager
def _memory_returned_after(cost: int) -> Iterator[None]:
    try:
        yield
    finally:
        if cost >= _TRIM_AFTER_BYTES:
            return_freed_memory()


def _decode(image: Image.Image) -> int:
    """Decode the first frame; return its EXIF orientation (1 when upright or unknown)."""
    image.seek(0)
    image.load()
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    return orientation if orientation in range(1, 9) else 1


def _eight_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit grayscale as 8-bit L (or LA) by its high byte, closing ``image``.

    Pillow's own conversion clips every value over 255 to white, so each 16-bit grayscale
    picture would hash as a blank one and match every other.
    """
    if image.mode not in _WIDE_GRAY:
        return image
    wide = np.asarray(image)
    key = image.info.get("transparency")
    image.close()
    if wide.dtype != np.uint16:
        wide = np.clip(wide, 0, 0xFFFF)
    gray = Image.fromarray((wide >> 8).astype(np.uint8))
    if key is None:
        return gray
    opaque = Image.fromarray(np.not_equal(wide, key).view(np.uint8) * np.uint8(255))
    del wide
    return Image.merge("LA", (gray, opaque))


def _turn_upright(image: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation to a derived image (the decoded one is never copied)."""
    if orientation != 1:
        image.getexif()[_EXIF_ORIENTATION] = orientation
        ImageOps.exif_transpose(image, in_place=True)
    return image


def _decode_colour(data: bytes, max_pixels: int) -> Image.Image:
    image = open_image(data, max_pixels=max_pixels)
    _draft(image, "RGB", THUMBNAIL_MAX_SIDE, side=max)  # the thumbnail's box bounds the long side
    _decode(image)
    return image


def _draft(
    image: Image.Image, mode: str, min_side: int, side: Callable[[tuple[int, int]], int] = min
) -> None:
    """Let the JPEG decoder scale down, but keep ``side`` (the short one, by default) at least
    ``min_side`` pixels."""
    kept_side = side(image.size)
    if image.format != "JPEG" or kept_side <= min_side:
        return
    scale = min_side / kept_side
    wanted = (math.ceil(image.width * scale), math.ceil(image.height * scale))
    image.draft(mode, wanted)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _gray_pixels(image: Image.Image, orientation: int) -> np.ndarray:
    """8-bit grayscale, upright, with transparent pixels white, whatever colour the encoder
    left there. Closes ``image`` as soon as its pixels are converted, to keep the peak low.
    """
    if _has_alpha(image):
        luma, alpha = _gray_and_alpha(image)
        gray = Image.new("L", luma.size, 255)
        gray.paste(luma, None, alpha)  # Image.composite onto white, without its extra copy
        luma.close()
        alpha.close()
    elif image.mode == "L":
        gray = image
    else:
        gray = image.convert("L")
        image.close()
    pixels = np.asarray(_turn_upright(gray, orientation))
    gray.close()
    return pixels


def _gray_and_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The luma and alpha planes, closing ``image``; RGBA and LA need no 4-byte-a-pixel copy."""
    if image.mode in ("RGBA", "LA"):
        planes = image.convert("L"), image.getchannel("A")
        image.close()
        return planes
    gray_alpha = image.convert("LA")  # palette or colour-key transparency
    image.close()
    planes = gray_alpha.getchannel("L"), gray_alpha.getchannel("A")
    gray_alpha.close()
    return planes


def _thumbnail(image: Image.Image, orientation: int) -> bytes:
    # Shrink to about twice the thumbnail first (as Image.thumbnail's reducing_gap does), by
    # the same factor both ways except along a side shorter than the factor.
    factor = max(1, max(image.size) // (THUMBNAIL_MAX_SIDE * 2))
    small = _reduced_copy(image, (min(factor, image.width), min(factor, image.height)))
    small.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE), Image.Resampling.LANCZOS)
    if small.mode == "RGBA":
        white = Image.new("RGBA", small.size, (255, 255, 255, 255))
        small = Image.alpha_composite(white, small)
    buffer = io.BytesIO()
    _turn_upright(small.convert("RGB"), orientation).save(
        buffer, "WEBP", quality=75, method=THUMBNAIL_WEBP_METHOD
    )
    return buffer.getvalue()


def _reduced_copy(image: Image.Image, factors: tuple[int, int]) -> Image.Image:
    """An RGB(A) copy shrunk by box averaging over factor_x × factor_y pixels, in strips.

    Pillow converts a whole RGBA image to premultiplied alpha before it resizes or reduces
    it: a second 4-byte-a-pixel copy. Strips keep that copy a few rows high.
    """
    mode = "RGBA" if _has_alpha(image) else "RGB"
    if factors == (1, 1):
        return image.convert(mode)
    factor_x, factor_y = factors
    width, height = image.width // factor_x, image.height // factor_y
    reduced = Image.new(mode, (width, height))
    rows = max(1, _STRIP_PIXELS // (image.width * factor_y))  # reduced rows per strip
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        strip = image.crop((0, top * factor_y, width * factor_x, bottom * factor_y))
        reduced.paste(strip.convert(mode).reduce(factors), (0, top))
    return reduced


def _unsupported(data: bytes) -> ImageRejected:
    """What bytes that no allowed decoder identified seem to be."""
    head = data[:512].lstrip()
    lowered = head.lower()
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in lowered):
        return ImageRejected(Rejection.UNSUPPORTED_FORMAT, "SVG")
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered:
        return ImageRejected(Rejection.NOT_AN_IMAGE, "HTML document")
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace").strip().upper()
        if brand in _STILL_IMAGE_BRANDS:  # allowed, yet neither Pillow nor libheif took it
            return ImageRejected(Rejection.CORRUPT, f"unreadable {_STILL_IMAGE_BRANDS[brand]} file")
        return ImageRejected(Rejection.UNSUPPORTED_FORMAT, f"ISO media ({brand})")  # MP4…
    for signature, name in _KNOWN_SIGNATURES:
        if head.startswith(signature):
            return ImageRejected(Rejection.UNSUPPORTED_FORMAT, name)
    return ImageRejected(Rejection.NOT_AN_IMAGE)


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:g}"
