"""``lookalike bench quality DIR``: which edited copies of a photo search finds, per edit.

Every photo under DIR is indexed; each photo (the largest file of each group of copies) is
edited 17 ways, and every edited copy is searched for. Lookalike goes through the real store
(a scratch database, ``Store.search`` at the default radius: the SQL of ``/api/search``);
imagehash's dHash and pHash, and PDQ when ``pdqhash`` is importable, search the same files by
brute force in the same run, so the columns compare like with like.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import click
import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from benchmarks.bench import Report, image_files, record_option
from benchmarks.moderation import group_files
from lookalike import indexer, kinds
from lookalike.config import database_url
from lookalike.fingerprint import ImageRejected, fingerprint
from lookalike.store import DEFAULT_MAX_DISTANCE, Store
from lookalike.store.db import open_pool, scratch_database

BASELINE_RADIUS = 10  # imagehash dHash and pHash
PDQ_THRESHOLD = 31  # PDQ's own recommended match threshold, over its 8 dihedral variants


def _encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _scaled(image: Image.Image, x: float, y: float) -> Image.Image:
    size = (max(1, round(image.width * x)), max(1, round(image.height * y)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _crop_centre(share: float) -> Callable[[Image.Image], Image.Image]:
    def crop(image: Image.Image) -> Image.Image:
        width, height = round(image.width * share), round(image.height * share)
        left, top = (image.width - width) // 2, (image.height - height) // 2
        return image.crop((left, top, left + width, top + height))

    return crop


def _square(image: Image.Image) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _white_border(image: Image.Image) -> Image.Image:
    x, y = round(image.width * 0.05), round(image.height * 0.05)
    return ImageOps.expand(image, (x, y, x, y), fill="white")


def _letterbox(image: Image.Image) -> Image.Image:
    side = max(image.size)
    return ImageOps.pad(image, (side, side), color="black")


def _caption(image: Image.Image) -> Image.Image:
    """A black band over the bottom eighth of the picture, with white text: a caption strip."""
    out = image.copy()
    band = max(1, image.height // 8)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, image.height - band, image.width, image.height), fill="black")
    font = ImageFont.load_default(size=max(6, band * 2 // 3))
    draw.text((band // 2, image.height - band), "WHEN THE CAPTION", fill="white", font=font)
    return out


def _logo(image: Image.Image) -> Image.Image:
    """A coloured badge a fifth of the width wide pasted over the bottom-right corner."""
    out = image.copy()
    width = max(2, image.width // 5)
    height = max(2, width // 2)
    right, bottom = image.width - width // 8, image.height - width // 8
    draw = ImageDraw.Draw(out)
    draw.rectangle((right - width, bottom - height, right, bottom), fill=(220, 30, 60))
    font = ImageFont.load_default(size=max(6, height // 2))
    draw.text((right - width + 3, bottom - height + 3), "LOGO", fill="white", font=font)
    return out


def _png(edit: Callable[[Image.Image], Image.Image]) -> Callable[[Image.Image], bytes]:
    return lambda image: _encode(edit(image))


# The 17 edits. Each saves losslessly (PNG) unless compression is the point, so each
# row measures one change.
EDITS: dict[str, Callable[[Image.Image], bytes]] = {
    "resize 50%": _png(lambda image: _scaled(image, 0.5, 0.5)),
    "JPEG q20": lambda image: _encode(image, "JPEG", quality=20),
    "grayscale": _png(lambda image: image.convert("L")),
    "+30% brightness": _png(lambda image: ImageEnhance.Brightness(image).enhance(1.3)),
    "90% width stretch": _png(lambda image: _scaled(image, 0.9, 1.0)),
    "mirror": _png(ImageOps.mirror),
    "rotate 90°": _png(lambda image: image.transpose(Image.Transpose.ROTATE_90)),
    "rotate 180°": _png(lambda image: image.transpose(Image.Transpose.ROTATE_180)),
    "rotate 5°": _png(
        lambda image: image.rotate(5, Image.Resampling.BICUBIC, expand=True, fillcolor="black")
    ),
    "crop centre 90%": _png(_crop_centre(0.9)),
    "crop centre 75%": _png(_crop_centre(0.75)),
    "crop left 70%": _png(lambda image: image.crop((0, 0, round(image.width * 0.7), image.height))),
    "crop to a square": _png(_square),
    "5% white border": _png(_white_border),
    "letterbox to square": _png(_letterbox),
    "caption band": _png(_caption),
    "corner logo": _png(_logo),
}


@dataclass(frozen=True, slots=True)
class Photo:
    path: Path
    data: bytes
    sha256: str
    group: int  # which photo it shows: resized re-saves of one photo share a group
    pixels: int


def _load(files: list[Path]) -> tuple[list[Photo], list[str]]:
    """The distinct files Lookalike can read, grouped by content; and why others were skipped.

    Files within 8 dHash bits of each other are one photo (the datasets' resized copies sit
    0-4 bits apart, unrelated photos 14 or more), so a copy never counts as a false match.
    """
    skipped, read, seen = [], [], set()
    for path in files:
        try:
            data = indexer.read_image_file(path)
            fp = fingerprint(data)
        except ImageRejected as error:
            skipped.append(f"{path}: {error}")
            continue
        if fp.sha256 not in seen:
            seen.add(fp.sha256)
            read.append((path, data, fp))
    groups = group_files([fp.hashes[kinds.DEFAULT_KIND] for _, _, fp in read])
    photos = [
        Photo(path, data, fp.sha256, group, fp.width * fp.height)
        for (path, data, fp), group in zip(read, groups, strict=True)
    ]
    return photos, skipped


def _originals(photos: list[Photo]) -> list[int]:
    """The index of each group's largest file: the one edited."""
    best: dict[int, int] = {}
    for index, photo in enumerate(photos):
        if photo.group not in best or photo.pixels > photos[best[photo.group]].pixels:
            best[photo.group] = index
    return sorted(best.values())


def _rgb(data: bytes) -> Image.Image:
    """Upright RGB pixels, transparent ones white, as Lookalike's fingerprint sees them."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, "white")
            flat.paste(rgba, None, rgba)
            return flat
        return image.convert("RGB")


class Method(Protocol):
    """A search method: ``found(data)`` is the set of indexed photos (by index) it returns."""

    name: str

    def found(self, data: bytes) -> set[int]: ...


class BruteForce:
    """Hashes of every photo held in memory, compared with every query hash in Python."""

    def __init__(
        self,
        name: str,
        photos: Sequence[Photo],
        index_hash: Callable[[bytes], np.ndarray],
        query_hashes: Callable[[bytes], list[np.ndarray]],
        radius: int,
    ) -> None:
        self.name = name
        self.query_hashes = query_hashes
        self.radius = radius
        self.hashes = np.array([np.packbits(index_hash(photo.data)) for photo in photos])

    def found(self, data: bytes) -> set[int]:
        near = np.zeros(len(self.hashes), dtype=bool)
        for query in self.query_hashes(data):
            bits = np.unpackbits(self.hashes ^ np.packbits(query), axis=1).sum(axis=1)
            near |= bits <= self.radius
        return set(np.flatnonzero(near).tolist())


def _imagehash(
    function: Callable[[Image.Image], imagehash.ImageHash],
) -> Callable[[bytes], np.ndarray]:
    def bits(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            return function(image).hash.flatten()

    return bits


def _baselines(photos: list[Photo]) -> tuple[list[Method], str | None]:
    """imagehash dHash and pHash, and PDQ if pdqhash is installed (else a line saying so)."""
    methods: list[Method] = []
    for name, function in (("dHash r10", imagehash.dhash), ("pHash r10", imagehash.phash)):
        bits = _imagehash(function)
        methods.append(
            BruteForce(name, photos, bits, lambda data, b=bits: [b(data)], BASELINE_RADIUS)
        )
    try:
        import pdqhash  # optional: it builds from source and needs a compiler
    except ImportError:
        return methods, "PDQ: not measured, pdqhash is not installed (pip install pdqhash)"
    methods.append(
        BruteForce(
            "PDQ x8 <=31",
            photos,
            lambda data: pdqhash.compute(np.asarray(_rgb(data)))[0],
            lambda data: list(pdqhash.compute_dihedral(np.asarray(_rgb(data)))[0]),
            PDQ_THRESHOLD,
        )
    )
    return methods, None


class Lookalike:
    """The photos recorded through the real store; each query as ``/api/search`` runs it."""

    name = "Lookalike"

    def __init__(self, store: Store, photos: list[Photo]) -> None:
        self.store = store
        self.by_sha = {photo.sha256: index for index, photo in enumerate(photos)}
        paths = [photo.path for photo in photos]
        indexer.index_files(store, indexer.fingerprint_files(paths, with_thumbnails=False))

    def found(self, data: bytes) -> set[int]:
        try:
            query = fingerprint(data).hashes[kinds.DEFAULT_KIND]
        except ImageRejected:  # a copy over Lookalike's size limits is not found
            return set()
        # every match within the radius, not just a page of them, so none is left uncounted
        matches = self.store.search(
            query, max_distance=DEFAULT_MAX_DISTANCE, limit=len(self.by_sha)
        )
        return {self.by_sha[match.sha256] for match in matches}


@dataclass
class Tally:
    """Hits per edit and false matches over all queries, for one method."""

    hits: dict[str, int]
    false_matches: int = 0


def _measure(photos: list[Photo], originals: list[int], methods: list[Method]) -> dict[str, Tally]:
    tallies = {method.name: Tally(dict.fromkeys(EDITS, 0)) for method in methods}
    for original in originals:
        group = photos[original].group
        image = _rgb(photos[original].data)
        for edit, make in EDITS.items():
            copy = make(image)
            for method in methods:
                found = method.found(copy)
                tally = tallies[method.name]
                tally.hits[edit] += original in found
                tally.false_matches += sum(photos[i].group != group for i in found)
    return tallies


def _report(report: Report, tallies: dict[str, Tally], queries: int, originals: int) -> None:
    names = list(tallies)
    width = max(len(edit) for edit in EDITS) + 2
    report.line(f"{'recall':<{width}}" + "".join(f"{name:>13}" for name in names))
    for edit in EDITS:
        cells = "".join(f"{tallies[name].hits[edit] / originals:>13.2f}" for name in names)
        report.line(f"{edit:<{width}}" + cells)
    means = "".join(f"{sum(tallies[name].hits.values()) / queries:>13.3f}" for name in names)
    report.line(f"{f'all {len(EDITS)} edits':<{width}}" + means)
    falses = "".join(f"{tallies[name].false_matches / queries:>13.3f}" for name in names)
    report.line(f"{'false matches/query':<{width}}" + falses)


@click.command("quality")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--originals",
    "limit",
    type=click.IntRange(min=1),
    help="Edit only the first N photos (by path); the others are distractors only.",
)
@record_option
def bench_quality(folder: Path, limit: int | None, record: Path | None) -> None:
    """Recall per edit and false matches per query: Lookalike against imagehash and PDQ.

    Every distinct JPEG/PNG under FOLDER (recursively) is indexed; files within 8 dHash bits
    of each other are one photo, and the largest file of each photo gets the 17 edits. A hit:
    the search for an edited copy returns the file it was made from. A false match: any
    result showing another photo (other files of the same photo count as neither).
    """
    photos, skipped = _load(image_files(folder))
    for reason in skipped:
        click.echo(f"skipped {reason}", err=True)
    if not photos:
        raise click.ClickException(f"no JPEG or PNG file in {folder} could be read")
    originals = _originals(photos)[:limit]
    queries = len(originals) * len(EDITS)
    report = Report(
        f"bench quality, {len(originals)} photos x {len(EDITS)} edits from {folder.name}"
    )
    report.line(
        f"{len(photos)} files indexed showing {len({p.group for p in photos})} photos; "
        f"{len(originals)} edited {len(EDITS)} ways = {queries} queries"
    )
    report.line(
        f"Lookalike: Store.search at the default radius ({DEFAULT_MAX_DISTANCE}), "
        f"{kinds.DEFAULT_KIND}; imagehash dHash/pHash radius {BASELINE_RADIUS}; "
        f"PDQ: any of its 8 dihedral variants within {PDQ_THRESHOLD} (brute force)"
    )
    baselines, missing = _baselines(photos)
    with (
        scratch_database(database_url(), "lookalike_bench_quality") as url,
        Store(open_pool(url)) as store,
    ):
        methods = [Lookalike(store, photos), *baselines]
        tallies = _measure(photos, originals, methods)
    if missing:
        report.line(missing)
    _report(report, tallies, queries, len(originals))
    report.record(record)
