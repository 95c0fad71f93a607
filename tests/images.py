"""Images made by the tests themselves, so the suite runs on any machine.

``photo(seed)`` draws a deterministic picture with smooth gradients and shapes: different seeds
give unrelated pictures (dHashes ~32 bits apart), like different photos would.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


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


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noisy_jpeg(seed: int, size: tuple[int, int], quality: int = 90) -> bytes:
    """A photo with sensor-like noise: its JPEG bytes are dense in CR and LF, as real photos are."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(photo(seed, size), dtype=np.int16)
    pixels += rng.integers(-40, 41, pixels.shape, dtype=np.int16)
    return encode(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), "JPEG", quality=quality)
