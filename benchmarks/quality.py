r"""``lookalike bench quality DIR...``: which edited copies of a photo search finds, per edit.

Every photo under the folders is indexed as ``lookalike index`` records it (hashes and local
features, in a scratch database); each photo (the largest file of each group of copies) is
edited 17 ways, and every edited copy is searched for. The Lookalike column is the robust
search as the site runs it (``Store.search(..., robust=...)`` at the default radius); the
"hash-only" column is the plain hash search. imagehash's dHash and pHash, and PDQ when
``pdqhash`` is importable, search the same files by brute force in the same run, so the
columns compare like with like.

A second public photo set: the real photos bundled with scikit-image 0.26 (not committed)::

    pip download --no-deps -d /tmp/dl scikit-image
    unzip -j /tmp/dl/scikit_image-*.whl -d /tmp/photos2 $(for name in astronaut brick camera \
        chelsea coffee grass gravel motorcycle_left motorcycle_right rocket retina \
        hubble_deep_field moon coins page text clock_motion color ihc cell; \
        do echo "skimage/data/$name.*"; done)
    lookalike bench quality /work/shared/datasets /tmp/photos2 --same-photo 'chair*' \
        --same-scene 'motorcycle_*'
"""

from __future__ import annotations

import hashlib
import io
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import click
import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from benchmarks.bench import Report, image_files, record_option, same_photo_option
from benchmarks.moderation import group_files
from lookalike import indexer, kinds
from lookalike.config import database_url
from lookalike.features import index as feature_index
from lookalike.features import orb, verify
from lookalike.fingerprint import ImageRejected, fingerprint
from lookalike.store import DEFAULT_MAX_DISTANCE, Store
from lookalike.store.db import open_pool, scratch_database

BASELINE_RADIUS = 10  # imagehash dHash and pHash
PDQ_THRESHOLD = 31  # PDQ's own recommended match threshold, over its 8 dihedral variants
_JPEG_START = b"\xff\xd8"


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
    scene: int  # which scene or product: other shots of it are a class of false match
    pixels: int


def _load(
    files: list[Path], same_photo: Sequence[str], same_scene: Sequence[str]
) -> tuple[list[Photo], list[str]]:
    """The distinct files Lookalike can read, grouped by content; and why others were skipped.

    Files within 8 dHash bits of each other are one photo (the datasets' resized copies sit
    0-4 bits apart, unrelated photos 14 or more), so a copy never counts as a false match;
    so are the files matching one ``same_photo`` glob (crops of one photo). The files matching
    one ``same_scene`` glob show one scene or product, each shot still a photo of its own.
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
    paths = [path for path, _, _ in read]
    groups = _united(
        group_files([fp.hashes[kinds.DEFAULT_KIND] for _, _, fp in read]), paths, same_photo
    )
    scenes = _united(groups, paths, same_scene)
    photos = [
        Photo(path, data, fp.sha256, group, scene, fp.width * fp.height)
        for (path, data, fp), group, scene in zip(read, groups, scenes, strict=True)
    ]
    return photos, skipped


def _united(labels: list[int], paths: list[Path], globs: Sequence[str]) -> list[int]:
    """``labels`` with every label held by a file matching one glob made one label."""
    for pattern in globs:
        matched = {label for label, path in zip(labels, paths, strict=True) if path.match(pattern)}
        if matched:
            labels = [min(matched) if label in matched else label for label in labels]
    return labels


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


def _indexed(store: Store, photos: list[Photo]) -> dict[str, int]:
    """Record the photos as ``lookalike index`` does; each one's index by its sha256."""
    paths = [photo.path for photo in photos]
    indexer.index_files(store, indexer.fingerprint_files(paths, with_thumbnails=False))
    store.refresh_features()
    return {photo.sha256: position for position, photo in enumerate(photos)}


class Lookalike:
    """Each query searched through the real store as ``/api/search`` runs it: robust (its
    mirrored, turned and trimmed views and its local features), or by its hash only."""

    def __init__(self, store: Store, by_sha: dict[str, int], *, robust: bool) -> None:
        self.name = "Lookalike" if robust else "Lookalike hash-only"
        self.store = store
        self.by_sha = by_sha
        self.robust = robust
        self.describe_seconds: list[float] = []
        self.search_seconds: list[float] = []

    def found(self, data: bytes) -> set[int]:
        started = time.perf_counter()
        try:
            fp = fingerprint(data, as_query=self.robust)
        except ImageRejected:  # a copy over Lookalike's size limits is not found
            return set()
        described = time.perf_counter()
        # every match within the radius, not just a page of them, so none is left uncounted
        matches = self.store.search(
            fp.hashes[kinds.DEFAULT_KIND],
            max_distance=DEFAULT_MAX_DISTANCE,
            limit=len(self.by_sha),
            robust=fp.query,
        )
        self.search_seconds.append(time.perf_counter() - described)
        self.describe_seconds.append(described - started)
        return {self.by_sha[match.sha256] for match in matches}


@dataclass
class Tally:
    """Hits per edit and false matches (of unrelated photos, of the same scene), one method."""

    hits: dict[str, int]
    unrelated: int = 0
    same_scene: int = 0


def _stored_edits(
    photos: list[Photo], originals: list[int], folder: Path
) -> tuple[list[Photo], dict[tuple[int, str], int]]:
    """What is indexed when the edits are stored: every photo but the originals, then each
    original's edited copies (written to ``folder``, as ``lookalike index`` reads files); and
    where each (original, edit) copy is in that list."""
    left_out = set(originals)
    stored = [photo for position, photo in enumerate(photos) if position not in left_out]
    by_sha = {photo.sha256: position for position, photo in enumerate(stored)}
    copies: dict[tuple[int, str], int] = {}
    for original in originals:
        source = photos[original]
        image = _rgb(source.data)
        for number, (edit, make) in enumerate(EDITS.items()):
            data = make(image)
            sha256 = hashlib.sha256(data).hexdigest()
            if sha256 not in by_sha:  # a square photo cropped to a square is itself
                suffix = "jpg" if data.startswith(_JPEG_START) else "png"
                path = folder / f"{original}-{number}.{suffix}"
                path.write_bytes(data)
                by_sha[sha256] = len(stored)
                stored.append(Photo(path, data, sha256, source.group, source.scene, source.pixels))
            copies[(original, edit)] = by_sha[sha256]
    return stored, copies


def _measure_stored(
    photos: list[Photo],
    originals: list[int],
    stored: list[Photo],
    copies: dict[tuple[int, str], int],
    methods: list[Method],
) -> dict[str, Tally]:
    """Each original searched for among the stored edits: a hit per edited copy found, a
    false match per other photo found (once, however many of its copies are)."""
    tallies = {method.name: Tally(dict.fromkeys(EDITS, 0)) for method in methods}
    for original in originals:
        source = photos[original]
        for method in methods:
            found = method.found(source.data)
            tally = tallies[method.name]
            for edit in EDITS:
                tally.hits[edit] += copies[(original, edit)] in found
            falses = {
                (stored[i].group, stored[i].scene) for i in found if stored[i].group != source.group
            }
            tally.same_scene += sum(scene == source.scene for _, scene in falses)
            tally.unrelated += sum(scene != source.scene for _, scene in falses)
    return tallies


def _measure(photos: list[Photo], originals: list[int], methods: list[Method]) -> dict[str, Tally]:
    tallies = {method.name: Tally(dict.fromkeys(EDITS, 0)) for method in methods}
    for original in originals:
        edited = photos[original]
        image = _rgb(edited.data)
        for edit, make in EDITS.items():
            copy = make(image)
            for method in methods:
                found = [photos[i] for i in method.found(copy)]
                falses = [photo for photo in found if photo.group != edited.group]
                tally = tallies[method.name]
                tally.hits[edit] += edited in found
                tally.same_scene += sum(photo.scene == edited.scene for photo in falses)
                tally.unrelated += sum(photo.scene != edited.scene for photo in falses)
    return tallies


def _report(report: Report, tallies: dict[str, Tally], originals: int, queries: int) -> None:
    """Recall per edit (of ``originals`` photos), over all edits, and false matches per one
    of the ``queries`` searches."""
    names = list(tallies)
    columns = [max(13, len(name) + 2) for name in names]
    width = max(len(edit) for edit in EDITS) + 2

    def row(label: str, values: list[float], digits: int) -> None:
        cells = "".join(
            f"{value:>{column}.{digits}f}" for value, column in zip(values, columns, strict=True)
        )
        report.line(f"{label:<{width}}" + cells)

    report.line(
        f"{'recall':<{width}}" + "".join(f"{n:>{c}}" for n, c in zip(names, columns, strict=True))
    )
    for edit in EDITS:
        row(edit, [tallies[name].hits[edit] / originals for name in names], 2)
    copies = originals * len(EDITS)
    row(f"all {len(EDITS)} edits", [sum(tallies[n].hits.values()) / copies for n in names], 3)
    falses = [(tallies[n].unrelated, tallies[n].same_scene) for n in names]
    row("false matches/query", [(unrelated + same) / queries for unrelated, same in falses], 3)
    row("  unrelated photos", [unrelated / queries for unrelated, _ in falses], 3)
    row("  same scene/product", [same / queries for _, same in falses], 3)


def _settings() -> str:
    low, high = verify.PARALLAX_PX
    return (
        f"features: {orb.STORED_FEATURES} stored, {orb.QUERY_FEATURES} per query, at "
        f"{orb.WORKING_SIDE} px; ratio {verify.RATIO}, >= {verify.MIN_INLIERS} inliers; "
        f"another shot if >= {verify.PARALLAX_PAIRS} pairs and {verify.PARALLAX_SHARE:.0%} of "
        f"the inliers land {low:g}-{high:g} px off; {feature_index.CANDIDATES} candidates "
        f"from {feature_index.TABLES} tables of {feature_index.KEY_BITS}-bit keys"
    )


def _timings(method: Lookalike) -> str:
    describe = statistics.median(method.describe_seconds) * 1000
    search = statistics.median(method.search_seconds) * 1000
    return (
        f"robust search per query, median: describing it {describe:.1f} ms "
        f"(decode, views, features), Store.search {search:.1f} ms"
    )


@click.command("quality")
@click.argument(
    "folders",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--originals",
    "limit",
    type=click.IntRange(min=1),
    help="Edit only the first N photos (by path); the others are distractors only.",
)
@same_photo_option
@click.option(
    "--stored-edits",
    is_flag=True,
    help="Index the edited copies (not their originals) and search with each original: "
    "the copies a crawl finds of a picture someone has.",
)
@click.option(
    "--same-scene",
    multiple=True,
    metavar="GLOB",
    help="Files matching this glob (repeatable) are other shots of one scene or product.",
)
@record_option
def bench_quality(
    folders: tuple[Path, ...],
    limit: int | None,
    same_photo: tuple[str, ...],
    stored_edits: bool,
    same_scene: tuple[str, ...],
    record: Path | None,
) -> None:
    """Recall per edit and false matches per query: Lookalike against imagehash and PDQ.

    Every distinct JPEG/PNG under the FOLDERS (recursively) is indexed; files within 8 dHash
    bits of each other, or matching one --same-photo glob, are one photo, and the largest file
    of each photo gets the 17 edits. A hit: the search for an edited copy returns the file it
    was made from. A false match: any result showing another photo (other files of the same
    photo count as neither), counted apart when it shows the same scene (--same-scene).
    With --stored-edits the other way round: the originals are left out of the index, their
    edited copies are indexed, and each original is searched for; a hit is an edited copy
    found, a false match another photo found (once, however many of its copies are).
    """
    photos, skipped = _load(
        [path for folder in folders for path in image_files(folder)], same_photo, same_scene
    )
    for reason in skipped:
        click.echo(f"skipped {reason}", err=True)
    named = ", ".join(str(folder) for folder in folders)
    if not photos:
        raise click.ClickException(f"no JPEG or PNG file in {named} could be read")
    originals = _originals(photos)[:limit]
    queries = len(originals) if stored_edits else len(originals) * len(EDITS)
    sources = " + ".join(folder.name for folder in folders)
    edits = f"{len(EDITS)} {'stored ' if stored_edits else ''}edits"
    report = Report(f"bench quality, {len(originals)} photos x {edits} from {sources}")
    with tempfile.TemporaryDirectory() as folder:
        if stored_edits:
            indexed, copies = _stored_edits(photos, originals, Path(folder))
            report.line(
                f"{len(indexed)} files indexed: {len(originals)} photos' {len(EDITS)} edited "
                f"copies, without the photos, among {len(photos) - len(originals)} others; "
                f"each photo searched for = {queries} queries"
            )
        else:
            indexed, copies = photos, {}
            report.line(
                f"{len(photos)} files indexed showing {len({p.group for p in photos})} photos; "
                f"{len(originals)} edited {len(EDITS)} ways = {queries} queries"
            )
        report.line(
            f"Lookalike: Store.search at the default radius ({DEFAULT_MAX_DISTANCE}), "
            f"{kinds.DEFAULT_KIND}, robust: {_settings()}"
        )
        report.line(
            f"imagehash dHash/pHash radius {BASELINE_RADIUS}; "
            f"PDQ: any of its 8 dihedral variants within {PDQ_THRESHOLD} (brute force)"
        )
        baselines, missing = _baselines(indexed)
        with (
            scratch_database(database_url(), "lookalike_bench_quality") as url,
            Store(open_pool(url)) as store,
        ):
            by_sha = _indexed(store, indexed)
            robust = Lookalike(store, by_sha, robust=True)
            methods = [robust, Lookalike(store, by_sha, robust=False), *baselines]
            if stored_edits:
                tallies = _measure_stored(photos, originals, indexed, copies, methods)
            else:
                tallies = _measure(photos, originals, methods)
    if missing:
        report.line(missing)
    _report(report, tallies, len(originals), queries)
    report.line(_timings(robust))
    report.record(record)
