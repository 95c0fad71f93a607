"""``lookalike bench radius`` and ``lookalike bench check``: the numbers behind moderation banks.

``radius`` measures how far re-saved copies of real photos drift (recall) and how close
unrelated photos come (false positives) for each hash kind, which is what the banks' default
radius is chosen from. ``check`` measures a bank check against a large bank.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageOps

from lookalike.bench import Report, _jpeg_files, record_option
from lookalike.fingerprint import ImageRejected, fingerprint

RADII = range(17)
# Copies of one photo sit 0-4 bits apart and unrelated photos >= 14 (datasets README), so any
# threshold in between recovers which file is a copy of which.
SAME_PHOTO_BITS = 8


def _reencode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _half_size(image: Image.Image) -> bytes:
    small = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.LANCZOS)
    return _reencode(small, "PNG")


def _bordered(image: Image.Image) -> bytes:
    return _reencode(ImageOps.expand(image, border=1, fill="black"), "PNG")


def _everything(image: Image.Image) -> bytes:
    small = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.LANCZOS)
    return _reencode(ImageOps.expand(small.convert("L"), border=1, fill=0), "JPEG", quality=30)


# Each transform re-encodes losslessly (PNG) unless compression is the point, so each row
# measures one change.
TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "resize 50%": _half_size,
    "JPEG quality 30": lambda image: _reencode(image, "JPEG", quality=30),
    "grayscale": lambda image: _reencode(image.convert("L"), "PNG"),
    "1-px border": _bordered,
    "all four at once": _everything,
}


@dataclass(frozen=True, slots=True)
class Sample:
    group: int  # which photo it shows
    source: int  # which file it was made from
    kind: str  # "file" or a transform name
    dhash: int
    phash: int


def _group_files(hashes: list[int]) -> list[int]:
    """Union files whose dHashes are within SAME_PHOTO_BITS: which copies show one photo."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(hashes):
        for j in range(i):
            if (a ^ hashes[j]).bit_count() <= SAME_PHOTO_BITS:
                parent[root(i)] = root(j)
    return [root(i) for i in range(len(hashes))]


def _samples(files: list[Path]) -> tuple[list[Sample], list[str]]:
    """Fingerprints of every file and of every transformed copy; and the files skipped."""
    skipped: list[str] = []
    prints = []
    for path in files:
        try:
            prints.append((path, fingerprint(path.read_bytes())))
        except (OSError, ImageRejected) as error:
            skipped.append(f"{path}: {error}")
    groups = _group_files([fp.dhash for _, fp in prints])
    samples = []
    for index, ((path, fp), group) in enumerate(zip(prints, groups, strict=True)):
        samples.append(Sample(group, index, "file", fp.dhash, fp.phash))
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        for name, transform in TRANSFORMS.items():
            copy = fingerprint(transform(image))
            samples.append(Sample(group, index, name, copy.dhash, copy.phash))
    return samples, skipped


def _distances(values: list[int]) -> np.ndarray:
    """All pairwise Hamming distances of 64-bit hashes."""
    array = np.array(values, dtype=np.uint64)
    return np.bitwise_count(array[:, None] ^ array[None, :]).astype(np.int16)


@click.command("radius")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--phash-radius",
    type=click.IntRange(0, 64),
    default=12,
    show_default=True,
    help="pHash radius that confirms a dHash match in the bank rule column.",
)
@record_option
def bench_radius(folders: tuple[Path, ...], phash_radius: int, record: Path | None) -> None:
    """Recall on transformed copies and false positives between unrelated photos, per radius.

    Every JPEG/PNG under FOLDERS is fingerprinted, with a copy made by each transform (resize
    50%, JPEG quality 30, grayscale, 1-px border, all four). Files within 8 dHash bits of each
    other count as one photo. Recall: copies within the radius of the file they were made
    from, and files within the radius of the other files of their photo. False positives:
    pairs of samples of different photos within the radius.
    """
    files = [
        f for folder in folders for f in (_jpeg_files(folder) if folder.is_dir() else [folder])
    ]
    samples, skipped = _samples(files)
    if not samples:
        raise click.ClickException("no JPEG or PNG files could be fingerprinted")
    for reason in skipped:
        click.echo(reason, err=True)
    names = ", ".join(folder.name for folder in folders)
    report = Report(f"bench radius, {len(samples)} samples from {names}")
    groups = np.array([s.group for s in samples])
    sources = np.array([s.source for s in samples])
    kinds = np.array([s.kind for s in samples])
    lower = np.tri(len(samples), k=-1, dtype=bool)
    unrelated = lower & (groups[:, None] != groups[None, :])
    is_file = kinds == "file"
    # a copy and its own file, or two files of one photo
    related = lower & (
        ((sources[:, None] == sources[None, :]) & (is_file[:, None] != is_file[None, :]))
        | ((groups[:, None] == groups[None, :]) & is_file[:, None] & is_file[None, :])
    )
    by_kind = {
        kind: related
        & (
            (kinds[:, None] == kind) | (kinds[None, :] == kind)
            if kind != "file"
            else is_file[:, None] & is_file[None, :]
        )
        for kind in ["file", *TRANSFORMS]
    }
    distances = {
        "dHash": _distances([s.dhash for s in samples]),
        "pHash": _distances([s.phash for s in samples]),
    }
    photos = len(set(groups.tolist()))
    report.line(
        f"{int(is_file.sum())} files showing {photos} distinct photos, "
        f"{len(TRANSFORMS)} transformed copies of each; {int(related.sum())} related pairs, "
        f"{int(unrelated.sum())} unrelated pairs"
    )
    report.line()
    report.line(f"{'related pairs':<28} {'pairs':>6}   dHash mean/max   pHash mean/max")
    for kind, mask in by_kind.items():
        label = "file vs other file of photo" if kind == "file" else f"{kind} vs its file"
        cells = "".join(
            f"   {d[mask].mean():6.2f} / {d[mask].max():<4}" if mask.any() else "   -"
            for d in distances.values()
        )
        report.line(f"{label:<28} {int(mask.sum()):>6}{cells}")
    report.line(
        "closest unrelated pair:       "
        + ", ".join(f"{name} {int(d[unrelated].min())} bits" for name, d in distances.items())
    )
    report.line()
    report.line(
        f"recall on related pairs / false positives among unrelated pairs, per radius r "
        f"(the bank rule confirms a dHash match with pHash <= {phash_radius})"
    )
    dhash, phash = distances["dHash"], distances["pHash"]
    rules = {
        "dHash <= r": lambda r: dhash <= r,
        "pHash <= r": lambda r: phash <= r,
        "bank rule": lambda r: (dhash <= r) & (phash <= phash_radius),
    }
    report.line(f"{'r':>3}" + "".join(f"  {name:>22}" for name in rules))
    total_unrelated = int(unrelated.sum())
    for radius in RADII:
        cells = ""
        for rule in rules.values():
            within = rule(radius)
            recall = within[related].mean()
            false_positives = int(within[unrelated].sum())
            cells += f"  {100 * recall:7.1f}% {false_positives:>6}/{total_unrelated}"
        report.line(f"{radius:>3}{cells}")
    report.record(record)
