"""``lookalike bench radius``, ``check`` and ``moderation``: the numbers behind moderation banks.

``radius`` measures how far re-saved copies of real photos drift (recall) and how close
unrelated photos come (false positives) for each hash kind, which is what the banks' default
radius is chosen from. ``check`` measures a bank check against a large bank. ``moderation``
measures each route of a check (plain hash, the upload's views, local features) on banned
photos disguised the ways re-uploaders disguise them, and on unrelated uploads.
"""

from __future__ import annotations

import io
import itertools
import os
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageOps

from benchmarks.bench import Report, image_files, percentile, record_option, same_photo_option
from benchmarks.data import clustered_hashes, indexes_dropped
from lookalike.config import database_url
from lookalike.features.orb import BANK_FEATURES
from lookalike.fingerprint import ImageRejected, fingerprint
from lookalike.store.banks import BankMatch, Banks, FlagTarget
from lookalike.store.db import apply_migrations, connect, open_pool, scratch_database

RADII = range(17)
BENCH_BANK = "bench"
COMPARED_RADII = (4, 8, 10)  # single-client latency is also shown at these radii
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


def group_files(hashes: list[int]) -> list[int]:
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
    groups = group_files([fp.hashes["dhash"] for _, fp in prints])
    samples = []
    for index, ((path, fp), group) in enumerate(zip(prints, groups, strict=True)):
        samples.append(Sample(group, index, "file", fp.hashes["dhash"], fp.hashes["phash"]))
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        for name, transform in TRANSFORMS.items():
            copy = fingerprint(transform(image))
            samples.append(Sample(group, index, name, copy.hashes["dhash"], copy.hashes["phash"]))
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
        f for folder in folders for f in (image_files(folder) if folder.is_dir() else [folder])
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


def _load_bank(url: str, hashes: np.ndarray) -> None:
    """COPY the entries into one bank with its chunk indexes dropped, then rebuild them once."""
    indexes = [f"bank_entries_dhash_chunk{chunk}" for chunk in range(3)]
    with connect(url, autocommit=True) as conn:
        (bank_id,) = conn.execute(
            "INSERT INTO banks (name) VALUES (%s) RETURNING id", (BENCH_BANK,)
        ).fetchone()
        with (
            indexes_dropped(conn, [*indexes, "bank_entries_active_fingerprint"]),
            conn.cursor().copy(
                "COPY bank_entries (bank_id, dhash, phash, reason, flagged_by) FROM STDIN"
            ) as copy,
        ):
            for start in range(0, len(hashes), 100_000):
                copy.write(
                    "".join(
                        f"{bank_id}\t{value}\t{value}\tbench\tbench\n"
                        for value in hashes[start : start + 100_000].tolist()
                    )
                )
    with connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) bank_entries")  # visibility map: index-only probes


def _check_queries(hashes: np.ndarray, held_out: np.ndarray, count: int) -> list[int]:
    """Half re-uploads (a flagged hash with up to 3 bits flipped), half held-out hashes."""
    rng = np.random.default_rng(11)
    picks = hashes[rng.integers(0, len(hashes), size=count // 2)].view(np.uint64)
    for _ in range(3):
        picks ^= np.uint64(1) << rng.integers(0, 64, size=len(picks)).astype(np.uint64)
    queries = [*picks.tolist(), *held_out[: count - len(picks)].view(np.uint64).tolist()]
    rng.shuffle(queries)
    return queries


def _concurrent_checks(
    banks: Banks, queries: list[int], clients: int, seconds: float
) -> tuple[int, list[float]]:
    """Run checks from ``clients`` threads for ``seconds``: (checks done, latencies in ms)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    deadline = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def client(number: int) -> None:
        try:
            for query in itertools.islice(itertools.cycle(queries), number, None, clients):
                started = time.perf_counter()
                if started > deadline:
                    return
                banks.check({"dhash": query})
                latencies[number].append((time.perf_counter() - started) * 1000)
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    merged = [ms for own in latencies for ms in own]
    return len(merged), merged


@click.command("check")
@click.option(
    "--entries",
    type=click.IntRange(min=1000),
    default=1_000_000,
    show_default=True,
    help="Flagged hashes in the bank.",
)
@click.option(
    "--queries",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    help="Checks timed one at a time.",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Concurrent clients for the throughput run.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=20,
    show_default=True,
    help="Length of the throughput run.",
)
@record_option
def bench_check(
    entries: int, queries: int, clients: int, seconds: float, record: Path | None
) -> None:
    """Bank check latency against ENTRIES flagged hashes, alone and under concurrent clients.

    The bank is filled with clustered hashes (skewed bits, near-duplicate clusters, like real
    dHashes); queries are half near copies of flagged hashes and half hashes held out of the
    bank (the synthetic space is dense: most of those are near some entry too). Each goes
    through Banks.check (the bank_matches SQL function), as `lookalike check` and the API do.
    Runs in a throwaway database beside $DATABASE_URL's (or the embedded server's).
    """
    report = Report(f"bench check, a bank of {entries:,} clustered hashes")
    generated = clustered_hashes(entries + queries, seed=5)
    hashes, held_out = np.unique(generated[:entries]), generated[entries:]
    with scratch_database(database_url(), "lookalike_bench") as url:
        apply_migrations(url)
        started = time.perf_counter()
        _load_bank(url, hashes)
        report.line(
            f"loaded {len(hashes):,} entries + MIH indexes in {time.perf_counter() - started:.0f} s"
        )
        query_hashes = _check_queries(hashes, held_out, queries)
        with closing(open_pool(url, max_size=clients, init_schema=False)) as pool:
            banks = Banks(pool)
            banks.check({"dhash": query_hashes[0]})  # warm the connection's plans
            default_radius = banks.summaries()[0].dhash_radius
            for radius in sorted({*COMPARED_RADII, default_radius}):
                found = 0
                single: list[float] = []
                for query in query_hashes:
                    started = time.perf_counter()
                    found += bool(banks.check({"dhash": query}, max_distance=radius))
                    single.append((time.perf_counter() - started) * 1000)
                report.line(
                    f"1 client,  radius {radius:>2}: p50 {percentile(single, 0.5):6.2f} ms, "
                    f"p99 {percentile(single, 0.99):6.2f} ms over {len(single)} checks "
                    f"({found} flagged)" + (" <- bank default" if radius == default_radius else "")
                )
            done, loaded = _concurrent_checks(banks, query_hashes, clients, seconds)
            report.line(
                f"{clients} clients, radius {default_radius:>2}: {done / seconds:.0f} checks/s, "
                f"p50 {percentile(loaded, 0.5):.2f} ms, p99 {percentile(loaded, 0.99):.2f} ms "
                f"over {seconds:g} s on {os.cpu_count()} cores"
            )
    report.record(record)


def disguises() -> dict[str, Callable[[Image.Image], bytes]]:
    """How re-uploaders disguise a banned picture to beat plain hashes: edits of
    ``lookalike bench quality``, with the crop cut deeper, to the centre 60%."""
    from benchmarks import quality  # here, not at the top: quality imports this module

    kept = ("mirror", "rotate 90°", "rotate 5°", "5% white border", "caption band")
    chosen = {name: quality.EDITS[name] for name in kept}
    return {**chosen, "crop centre 60%": quality._png(quality._crop_centre(0.6))}


# "features": entries only the local features found (a check verifies features only for
# entries no view's hash matched).
ROUTES = ("plain", "views", "features", "robust")


@dataclass
class RouteTally:
    """Per route: hits per disguise and entries of other photos returned, over all checks."""

    disguises: list[str]
    hits: dict[str, dict[str, int]] = field(default_factory=dict)  # route → disguise → hits
    false_positives: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTES, 0))
    false_pairs: list[str] = field(default_factory=list)  # the robust route's, described
    plain_ms: list[float] = field(default_factory=list)
    robust_ms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hits = {route: dict.fromkeys(self.disguises, 0) for route in ROUTES}


def _routes(plain: list[BankMatch], robust: list[BankMatch]) -> dict[str, set[int]]:
    """The entries each route returned."""
    by_method = {
        method: {m.entry_id for m in robust if m.relation and m.relation.method == method}
        for method in ("hash", "features")
    }
    return {
        "plain": {m.entry_id for m in plain},
        "views": by_method["hash"],
        "features": by_method["features"],
        "robust": {m.entry_id for m in robust},
    }


def _checked(banks: Banks, data: bytes, tally: RouteTally) -> dict[str, set[int]]:
    """Check an upload the plain way and the robust way, timing each."""
    upload = fingerprint(data, as_query=True)
    started = time.perf_counter()
    plain = banks.check(upload.hashes)
    tally.plain_ms.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    robust = banks.check(upload.hashes, query=upload.query)
    tally.robust_ms.append((time.perf_counter() - started) * 1000)
    return _routes(plain, robust)


def _flag_all(banks: Banks, photos: list[bytes]) -> dict[int, int]:
    """Flag each photo with its local features: entry id → the photo's index."""
    entry_of = {}
    for index, data in enumerate(photos):
        target = FlagTarget.from_fingerprint(
            fingerprint(data, with_features=True, feature_limit=BANK_FEATURES)
        )
        flagged = banks.flag(target, bank=BENCH_BANK, reason=None, flagged_by="bench")
        entry_of[flagged.entry.id] = index
    return entry_of


@click.command("moderation")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@same_photo_option
@record_option
def bench_moderation(folder: Path, same_photo: tuple[str, ...], record: Path | None) -> None:
    """Recall per disguise and false positives per check, for each route of a bank check.

    The largest file of each distinct photo under FOLDER (files within 8 dHash bits are one
    photo) is flagged into one bank with its local features, as `lookalike flag` does. Every
    flagged photo is then checked as it is and disguised 6 ways (mirror, rotate 90° and 5°,
    crop to the centre 60%, a 5% border, a caption band). A hit: the check of a disguised copy
    returns the photo's own entry. A false positive: any entry of another photo returned, so
    every check is an unrelated upload to all the other entries (files matching one
    ``--same-photo`` glob are one photo). Routes: plain (the upload's
    own hashes, the check before robust checks), views (the bank's hash rule on each view:
    mirrored, turned, trimmed), features (local features confirmed by a fit, for entries no
    view found), robust (either: what `lookalike check` and /api/check do).
    """
    from benchmarks import quality  # here, not at the top: quality imports this module

    photos, skipped = quality._load(image_files(folder), same_photo, ())
    for reason in skipped:
        click.echo(f"skipped {reason}", err=True)
    flagged = [photos[index] for index in quality._originals(photos)]
    if len(flagged) < 2:
        raise click.ClickException(f"{folder} has fewer than 2 distinct photos to compare")
    edits = disguises()
    tally = RouteTally(list(edits))
    with (
        scratch_database(database_url(), "lookalike_bench_moderation") as url,
        closing(open_pool(url, max_size=2)) as pool,
    ):
        banks = Banks(pool)
        entry_of = _flag_all(banks, [photo.data for photo in flagged])
        for index, photo in enumerate(flagged):
            image = quality._rgb(photo.data)
            uploads = {"as it is": photo.data} | {name: make(image) for name, make in edits.items()}
            for name, data in uploads.items():
                found = _checked(banks, data, tally)
                for route, entries in found.items():
                    others = {entry for entry in entries if entry_of[entry] != index}
                    if name in edits:
                        tally.hits[route][name] += len(others) < len(entries)
                    tally.false_positives[route] += len(others)
                tally.false_pairs += [
                    f"{photo.path.name} ({name}) matched the entry of "
                    f"{flagged[entry_of[entry]].path.name}"
                    for entry in sorted(found["robust"])
                    if entry_of[entry] != index
                ]
    checks = len(flagged) * len(uploads)
    report = Report(
        f"bench moderation, {len(flagged)} flagged photos x {len(uploads)} uploads from "
        f"{folder.name}"
    )
    _report_routes(report, tally, len(flagged), checks)
    report.record(record)


def _report_routes(report: Report, tally: RouteTally, flagged: int, checks: int) -> None:
    report.line(
        f"{flagged} photos flagged with their local features; each checked as it is and "
        f"disguised {len(tally.disguises)} ways = {checks} checks, each an unrelated upload "
        f"to the other {flagged - 1} entries"
    )
    width = max(len(name) for name in tally.disguises) + 2
    report.line(f"{'recall':<{width}}" + "".join(f"{route:>10}" for route in ROUTES))
    for disguise in tally.disguises:
        cells = "".join(f"{tally.hits[route][disguise] / flagged:>10.2f}" for route in ROUTES)
        report.line(f"{disguise:<{width}}" + cells)
    queries = flagged * len(tally.disguises)
    means = "".join(
        f"{sum(tally.hits[route][d] for d in tally.disguises) / queries:>10.3f}" for route in ROUTES
    )
    report.line(f"{'all disguises':<{width}}" + means)
    falses = "".join(f"{tally.false_positives[route] / checks:>10.4f}" for route in ROUTES)
    report.line(f"{'false pos./check':<{width}}" + falses)
    report.line(
        f"check p50: plain {percentile(tally.plain_ms, 0.5):.2f} ms, robust "
        f"{percentile(tally.robust_ms, 0.5):.2f} ms (p99 {percentile(tally.robust_ms, 0.99):.2f})"
    )
    for pair in tally.false_pairs:
        report.line(f"false positive: {pair}")
