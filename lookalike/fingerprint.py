"""One decode-and-hash path for every caller: crawler, CLI and web site.

If two callers decoded differently, the same picture would get two hashes and search would
silently miss it, so everything that turns bytes into a fingerprint goes through here.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import asdict, dataclass

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lookalike import perceptual
from lookalike.hashes import hash_to_hex

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
THUMBNAIL_MAX_SIDE = 160
# JPEG draft decoding scales by 1/2, 1/4 or 1/8 inside the decoder. Keeping the reduced short
# side at or above this keeps dHash within a fraction of a bit of a full decode on average.
DRAFT_MIN_SHORT_SIDE = 256

# Pillow decides "bomb or not" with a global that only warns below twice its value; we check
# the declared size ourselves before decoding, so Pillow's own check is switched off.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False
_EXIF_ORIENTATION = 0x0112

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


class ImageRejected(ValueError):
    """The bytes cannot be fingerprinted; ``str(error)`` is a one-line reason for a person."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What Lookalike records about one distinct image content.

    ``dhash`` and ``phash`` are unsigned 64-bit integers in imagehash's bit order, so
    ``hash_to_hex(fp.dhash) == str(imagehash.dhash(img))``.
    """

    sha256: str
    dhash: int
    phash: int
    width: int
    height: int
    format: str
    thumbnail: bytes | None = None  # small WebP, when asked for: shows what matched later

    @property
    def dhash_hex(self) -> str:
        return hash_to_hex(self.dhash)

    @property
    def phash_hex(self) -> str:
        return hash_to_hex(self.phash)

    def to_dict(self) -> dict[str, object]:
        fields = asdict(self)
        del fields["thumbnail"]
        return fields | {"dhash": self.dhash_hex, "phash": self.phash_hex}


def fingerprint(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, with_thumbnail: bool = False
) -> Fingerprint:
    """Fingerprint encoded image bytes, or raise :class:`ImageRejected` saying why not.

    ``with_thumbnail`` adds a small colour WebP, decoded separately at thumbnail scale.
    """
    image = open_image(data, max_pixels=max_pixels)
    width, height = _displayed_size(image)
    fmt, colour_mode = image.format or "unknown", image.mode
    # The hashes only see luma, so JPEGs decode just that channel, at reduced scale. Every
    # caller gets this same decode, with or without a thumbnail, so hashes never diverge.
    _draft(image, "L", DRAFT_MIN_SHORT_SIDE)
    decoded = _decode(image)
    gray = np.asarray(_flatten_gray(decoded))
    thumbnail = None
    if with_thumbnail:
        lost_colour = decoded.mode == "L" and colour_mode != "L"
        thumbnail = _thumbnail(_decode_colour(data, max_pixels) if lost_colour else decoded)
    return Fingerprint(
        sha256=hashlib.sha256(data).hexdigest(),
        dhash=perceptual.dhash(gray),
        phash=perceptual.phash(gray),
        width=width,
        height=height,
        format=fmt,
        thumbnail=thumbnail,
    )


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Identify the bytes and check the declared size, without decoding any pixels yet."""
    if not data:
        raise ImageRejected("empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected(_describe_unsupported(data)) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(f"corrupt image: {_first_line(error)}") from None
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageRejected(
            f"image too large: {image.width}×{image.height} px (limit {_megapixels(max_pixels)} MP)"
        )
    if pixels == 0:
        raise ImageRejected(f"empty image: {image.width}×{image.height} px")
    return image


def _displayed_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as shown, after the EXIF orientation turns the image upright."""
    turned = image.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8)
    return (image.height, image.width) if turned else (image.width, image.height)


def _decode(image: Image.Image) -> Image.Image:
    """Decode the first frame, turned upright."""
    try:
        image.seek(0)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # a copy would double a 50 MP image
        return image
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRejected(f"truncated or corrupt image: {_first_line(error)}") from None


def _decode_colour(data: bytes, max_pixels: int) -> Image.Image:
    image = open_image(data, max_pixels=max_pixels)
    _draft(image, "RGB", THUMBNAIL_MAX_SIDE)
    return _decode(image)


def _draft(image: Image.Image, mode: str, min_short_side: int) -> None:
    """Let the JPEG decoder scale down, but never below ``min_short_side``."""
    short_side = min(image.size)
    if image.format != "JPEG" or short_side <= min_short_side:
        return
    scale = min_short_side / short_side
    wanted = (math.ceil(image.width * scale), math.ceil(image.height * scale))
    image.draft(mode, wanted)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _flatten_gray(image: Image.Image) -> Image.Image:
    """8-bit grayscale with transparent pixels white, whatever colour the encoder left there."""
    if not _has_alpha(image):
        return image.convert("L")
    gray_alpha = image.convert("LA")  # compositing one channel is ~8x cheaper than RGBA
    white = Image.new("L", image.size, 255)
    return Image.composite(gray_alpha.getchannel("L"), white, gray_alpha.getchannel("A"))


def _thumbnail(image: Image.Image) -> bytes:
    small = image.convert("RGBA" if _has_alpha(image) else "RGB")
    small.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE), Image.Resampling.LANCZOS)
    if small.mode == "RGBA":
        white = Image.new("RGBA", small.size, (255, 255, 255, 255))
        small = Image.alpha_composite(white, small)
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, "WEBP", quality=75)
    return buffer.getvalue()


def _describe_unsupported(data: bytes) -> str:
    head = data[:512].lstrip()
    lowered = head.lower()
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in lowered):
        return "unsupported format: SVG"
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered:
        return "not an image: HTML document"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace").strip().upper()
        if brand in _STILL_IMAGE_BRANDS:  # allowed, yet neither Pillow nor libheif took it
            return f"corrupt image: unreadable {_STILL_IMAGE_BRANDS[brand]} file"
        return f"unsupported format: ISO media ({brand})"  # MP4, QuickTime…
    for signature, name in _KNOWN_SIGNATURES:
        if head.startswith(signature):
            return f"unsupported format: {name}"
    return "not an image"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:g}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
