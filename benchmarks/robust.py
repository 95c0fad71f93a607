"""``lookalike bench robust DIR --images N``: the robust search at scale, against its targets.

The photos under DIR, made 1024×768 JPEGs, are fingerprinted (timed: the indexing target),
recorded through the real write path, and edited (mirrored, turned, cropped, framed,
captioned) into the queries. The rest of the N images are synthetic rows COPYed in beside
them: random hashes, and local features either drawn from the photos' own descriptors with a
few bits flipped (``perturbed``: the photos' keys recur, so their buckets fill up) or
random (``random``: every bucket fills evenly, the index's best case). The photos' edited
copies are then searched through ``Store.search(..., robust=...)``, each stage of it timed in
the same runs as the whole, and by their hash alone beside them.
"""

from __future__ import annotations

import gc
import io
import os
import resource
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import psutil
import psycopg
from PIL import Image, ImageOps

import lookalike.store
from benchmarks.bench import Report, image_files, percentile, record_option
from benchmarks.data import indexes_dropped
from benchmarks.quality import EDITS, _rgb
from lookalike import fingerprint as fingerprinting
from lookalike import kinds
from lookalike.config import database_url
from lookalike.features.index import KEY_BITS, TABLES, keys
from lookalike.features.orb import DESCRIPTOR_BYTES, STORED_FEATURES, LocalFeatures
from lookalike.features.query import QueryDescription
from lookalike.fingerprint import Fingerprint, fingerprint
from lookalike.memory import return_freed_memory
from lookalike.store import Sighting, Store
from lookalike.store import features as stored_features
from lookalike.store import robust as robust_search
from lookalike.store.db import (
    apply_migrations,
    connect,
    describe_server,
    open_pool,
    scratch_database,
)

SIZE = (1024, 768)
JPEG_QUALITY = 85
QUERY_EDITS = (
    "mirror",
    "rotate 90°",
    "rotate 5°",
    "crop centre 75%",
    "crop left 70%",
    "5% white border",
    "letterbox to square",
    "caption band",
)
SEARCH_P50_MS, SEARCH_P99_MS, IMAGES_PER_CORE_SECOND = 200, 1000, 100  # the targets
REFRESH_BATCH, REFRESH_ROUNDS = 1_000, 8
DESCRIPTOR_MODES = ("perturbed", "random")
_INDEXING_PASSES = 3
_BLOCK = 10_000  # synthetic images made and COPYed at a time
_SAMPLED_BLOCK = 10  # one synthetic block in this many is tallied for the buckets' fill
_SHIFT_PX = 2.0  # how far a perturbed feature moves, at the working size
_CHUNK_INDEXES = [f"images_dhash_chunk{chunk}" for chunk in range(3)]


def _at_size(path: Path) -> bytes | None:
    """The photo cropped to 4:3 and resized to SIZE, as a JPEG; None if it cannot be read."""
    try:
        picture = _rgb(path.read_bytes())
    except (OSError, ValueError):
        return None
    fitted = ImageOps.fit(picture, SIZE, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    fitted.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _cpu_seconds(run: Callable[[bytes], object], blobs: Sequence[bytes]) -> float:
    """CPU time (every thread of this process) to run over the blobs one at a time: the
    median of _INDEXING_PASSES passes, as other work on the machine slows some of them."""
    run(blobs[0])  # loads the libraries: the time is per image, not per process
    passes = []
    for _ in range(_INDEXING_PASSES):
        started = time.process_time()
        for blob in blobs:
            run(blob)
        passes.append(time.process_time() - started)
    return statistics.median(passes)


class Stopwatch:
    """Milliseconds spent inside chosen functions, and their calls, while ``watching``."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def watching(self, places: Sequence[tuple[object, str, str]]) -> Iterator[None]:
        """Time each ``(owner, attribute, stage)``: calls to ``owner.attribute`` count to it."""
        with ExitStack() as stack:
            for owner, attribute, stage in places:
                stack.enter_context(self._timed(owner, attribute, stage))
            yield

    def take(self) -> tuple[dict[str, float], dict[str, int]]:
        taken = dict(self.ms), dict(self.calls)
        self.ms.clear()
        self.calls.clear()
        return taken

    @contextmanager
    def _timed(self, owner: object, attribute: str, stage: str) -> Iterator[None]:
        original = getattr(owner, attribute)
        own = attribute in vars(owner)  # a module's function, or a method found on the class

        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.ms[stage] += (time.perf_counter() - started) * 1000
                self.calls[stage] += 1

        setattr(owner, attribute, timed)
        try:
            yield
        finally:
            if own:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)


@dataclass(frozen=True, slots=True)
class Descriptors:
    """The photos' stored features, pooled: what ``perturbed`` synthetic features come from."""

    descriptors: np.ndarray  # n×DESCRIPTOR_BYTES
    points: np.ndarray  # n×2, at the working size
    working: tuple[int, int]  # the working size of a SIZE picture

    @classmethod
    def of(cls, fingerprints: Sequence[Fingerprint]) -> Descriptors:
        stored = [LocalFeatures.from_bytes(fp.features or b"") for fp in fingerprints]
        return cls(
            np.concatenate([features.descriptors for features in stored]),
            np.concatenate([features.points for features in stored]),
            (stored[0].width, stored[0].height),
        )


def _flip_bits(descriptors: np.ndarray, flips: int, rng: np.random.Generator) -> np.ndarray:
    """A copy with ``flips`` random bits of each descriptor flipped (the same bit twice: none)."""
    flipped = descriptors.copy()
    rows = np.arange(len(flipped))
    for bit in rng.integers(0, 8 * DESCRIPTOR_BYTES, size=(flips, len(flipped))):
        flipped[rows, bit >> 3] ^= (1 << (bit & 7)).astype(np.uint8)
    return flipped


@dataclass(frozen=True, slots=True)
class Synthetic:
    """How the synthetic images' features are made, from one seeded generator."""

    pool: Descriptors
    mode: str  # one of DESCRIPTOR_MODES
    flips: int
    rng: np.random.Generator

    def describe(self) -> str:
        if self.mode == "random":
            return "random descriptors and points (every LSH bucket fills evenly)"
        return (
            f"each feature one of the photos' {len(self.pool.descriptors):,} stored ones, "
            f"{self.flips} bits flipped, moved ~{_SHIFT_PX:g} px"
        )

    def descriptors(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors and points of ``count`` images, STORED_FEATURES each, stacked."""
        n = count * STORED_FEATURES
        width, height = self.pool.working
        if self.mode == "random":
            descriptors = self.rng.integers(0, 256, size=(n, DESCRIPTOR_BYTES), dtype=np.uint8)
            points = self.rng.random((n, 2)) * (width - 1, height - 1)
        else:
            picked = self.rng.integers(0, len(self.pool.descriptors), size=n)
            descriptors = _flip_bits(self.pool.descriptors[picked], self.flips, self.rng)
            points = self.pool.points[picked] + self.rng.normal(0, _SHIFT_PX, size=(n, 2))
        points = np.clip(points, 0, (width - 1, height - 1)).astype(np.float32)
        return descriptors, points


class KeyTally:
    """How many stored features hold each LSH key (from a sample of the synthetic ones), to
    tell how many postings a query's keys read."""

    def __init__(self) -> None:
        self.counts = np.zeros((TABLES, 1 << KEY_BITS), np.float64)

    def add(self, descriptors: np.ndarray, weight: float = 1.0) -> None:
        for table, table_keys in enumerate(keys(descriptors)):
            self.counts[table] += weight * np.bincount(table_keys, minlength=1 << KEY_BITS)

    def postings(self, descriptor_sets: Sequence[np.ndarray]) -> tuple[float, int]:
        """(postings, distinct keys) a search for these descriptor sets reads."""
        total, distinct = 0.0, 0
        for descriptors in descriptor_sets:
            for table, table_keys in enumerate(keys(descriptors)):
                wanted = np.unique(table_keys)
                total += float(self.counts[table][wanted].sum())
                distinct += len(wanted)
        return total, distinct


def _fill(
    conn: psycopg.Connection, count: int, synthetic: Synthetic, tally: KeyTally | None
) -> tuple[float, float]:
    """COPY ``count`` synthetic images and their features in; (images, features) seconds."""
    rng = synthetic.rng
    highest = conn.execute("SELECT coalesce(max(id), 0) FROM images").fetchone()[0]  # type: ignore[index]
    started = time.perf_counter()
    columns = "sha256, dhash, phash, width, height, format"
    with conn.cursor().copy(f"COPY images ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["text", "int8", "int8", "int4", "int4", "text"])
        for start in range(0, count, _BLOCK):
            n = min(_BLOCK, count - start)
            digests = rng.bytes(32 * n).hex()
            info = np.iinfo(np.int64)
            hashes = rng.integers(info.min, info.max, size=(n, 2), dtype=np.int64).tolist()
            for row, (dhash, phash) in enumerate(hashes):
                copy.write_row((digests[64 * row : 64 * row + 64], dhash, phash, *SIZE, "JPEG"))
    images_seconds = time.perf_counter() - started
    ids = [
        image_id
        for (image_id,) in conn.execute(
            "SELECT id FROM images WHERE id > %s ORDER BY id", (highest,)
        )
    ]
    started = time.perf_counter()
    width, height = synthetic.pool.working
    with conn.cursor().copy(
        "COPY image_features (image_id, features) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "bytea"])
        for block, start in enumerate(range(0, len(ids), _BLOCK)):
            batch = ids[start : start + _BLOCK]
            descriptors, points = synthetic.descriptors(len(batch))
            if tally is not None and block % _SAMPLED_BLOCK == 0:
                tally.add(descriptors, weight=min(_SAMPLED_BLOCK, -(-len(ids) // _BLOCK)))
            for row, image_id in enumerate(batch):
                kept = slice(row * STORED_FEATURES, (row + 1) * STORED_FEATURES)
                features = LocalFeatures(points[kept], descriptors[kept], width, height)
                copy.write_row((image_id, features.to_bytes()))
    return images_seconds, time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Query:
    photo_id: int  # the image id of the photo it was edited from
    edit: str
    hash: int
    description: QueryDescription
    describe_ms: float  # fingerprint(…, as_query=True): decode, hashes, ORB ×2, 9 views
    description_ms: float  # the part of it describing the pixels (ORB ×2, 9 views' hashes)


def _queries(photos: Sequence[Image.Image], photo_ids: Sequence[int], count: int) -> list[Query]:
    """``count`` edited copies, photo after photo, each with the next of QUERY_EDITS."""
    watch = Stopwatch()
    made = []
    for number in range(count):
        picture = number % len(photos)
        edit = QUERY_EDITS[number % len(QUERY_EDITS)]
        data = EDITS[edit](photos[picture])
        with watch.watching([(fingerprinting, "describe", "describe")]):
            started = time.perf_counter()
            described = fingerprint(data, as_query=True)
            total_ms = (time.perf_counter() - started) * 1000
        ms, _ = watch.take()
        assert described.query is not None
        made.append(
            Query(
                photo_ids[picture],
                edit,
                described.hashes[kinds.DEFAULT_KIND],
                described.query,
                total_ms,
                ms["describe"],
            )
        )
    return made


# Stages of a robust search, timed by wrapping the functions Store.search calls.
_FIND, _CANDIDATES, _READS, _FACTS, _VERIFY = (
    "find",
    "candidates (feature index)",
    "feature reads (SQL)",
    "sizes + hashes (SQL)",
    "verification",
)
_VIEWS = "views' hash searches (SQL)"  # find's time outside the other stages
_ROWS = "matches' rows + sightings (SQL)"  # Store.search's time outside find


@dataclass
class Timed:
    total_ms: list[float]
    cpu_ms: list[float]  # this process's (not PostgreSQL's) CPU time
    stages: list[dict[str, float]]
    calls: list[dict[str, int]]
    found_photo: list[bool]


def _search_all(store: Store, queries: Sequence[Query], *, robust: bool) -> Timed:
    """Each query once untimed (a serving database is warm), then once timed, by stage."""

    def run(query: Query) -> list[int]:
        matches = store.search(query.hash, robust=query.description if robust else None)
        return [match.image_id for match in matches]

    for query in queries:
        run(query)
    watch = Stopwatch()
    places = [
        (lookalike.store, "find_robust", _FIND),
        (store.features, "candidates", _CANDIDATES),
        (stored_features, "read", _READS),
        (robust_search, "_image_facts", _FACTS),
        (robust_search, "relate", _VERIFY),
    ]
    timed = Timed([], [], [], [], [])
    with watch.watching(places):
        for query in queries:
            started, cpu = time.perf_counter(), time.process_time()
            found = run(query)
            total = (time.perf_counter() - started) * 1000
            timed.cpu_ms.append((time.process_time() - cpu) * 1000)
            ms, calls = watch.take()
            inside = ms.get(_CANDIDATES, 0) + ms.get(_READS, 0) + ms.get(_FACTS, 0)
            ms[_VIEWS] = ms.get(_FIND, 0) - inside - ms.get(_VERIFY, 0)
            ms[_ROWS] = total - ms.pop(_FIND, 0)
            timed.total_ms.append(total)
            timed.stages.append(ms)
            timed.calls.append(calls)
            timed.found_photo.append(query.photo_id in found)
    return timed


def _rss() -> int:
    gc.collect()
    return_freed_memory()
    return psutil.Process().memory_info().rss


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


@click.command("robust")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--images",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Images in the database: FOLDER's photos, the rest synthetic.",
)
@click.option(
    "--queries",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Edited copies of the photos searched for.",
)
@click.option(
    "--descriptors",
    type=click.Choice(DESCRIPTOR_MODES),
    default="perturbed",
    show_default=True,
    help="Synthetic features: the photos' own, perturbed, or random.",
)
@click.option(
    "--flips",
    type=click.IntRange(min=0, max=256),
    default=8,
    show_default=True,
    help="Bits flipped in each perturbed descriptor.",
)
@record_option
def bench_robust(
    folder: Path, images: int, queries: int, descriptors: str, flips: int, record: Path | None
) -> None:
    """The robust search on IMAGES images against the issue's targets, stage by stage.

    Runs in a scratch database beside $DATABASE_URL's (or the embedded server's), dropped
    afterwards.
    """
    made = (blob for blob in map(_at_size, image_files(folder)) if blob is not None)
    blobs = list(dict.fromkeys(made))  # copies that came out byte for byte the same: one image
    if not blobs:
        raise click.ClickException(f"no JPEG or PNG file in {folder} could be read")
    if images < len(blobs):
        raise click.ClickException(f"--images must be at least the {len(blobs)} photos")
    report = Report(f"bench robust, {images:,} images ({descriptors} synthetic features)")
    server = database_url()
    with connect(server) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    report.line(
        f"server: PostgreSQL {version} at {describe_server(server)}; {os.cpu_count()} cores"
    )
    fingerprints = _report_indexing(report, blobs)
    with scratch_database(server, "lookalike_bench") as url:
        apply_migrations(url)
        with Store(open_pool(url)) as store:
            photo_ids = _record_photos(store, fingerprints)
            rng = np.random.default_rng(11)
            synthetic = Synthetic(Descriptors.of(fingerprints), descriptors, flips, rng)
            tally = KeyTally()
            for fp in fingerprints:
                tally.add(LocalFeatures.from_bytes(fp.features or b"").descriptors)
            _report_fill(report, url, images - len(blobs), synthetic, tally, len(blobs))
            _report_storage(report, url, images)
            _report_build(report, store, images)
            photos = [Image.open(io.BytesIO(blob)).convert("RGB") for blob in blobs]
            searched = _queries(photos, photo_ids, queries)
            _report_search(report, store, searched, tally)
            _report_refresh(report, url, store, synthetic)
    report.record(record)


def _report_indexing(report: Report, blobs: list[bytes]) -> list[Fingerprint]:
    """Images/s per core with and without local features; the fingerprints with them."""
    plain = _cpu_seconds(fingerprint, blobs)
    with_features = _cpu_seconds(lambda blob: fingerprint(blob, with_features=True), blobs)
    n = len(blobs)
    report.line(
        f"indexing {n} JPEGs at {SIZE[0]}x{SIZE[1]} q{JPEG_QUALITY} (CPU time, one process, median "
        f"of {_INDEXING_PASSES} passes): "
        f"fingerprint {n / plain:.0f} images/s per core, with local features "
        f"{n / with_features:.0f} (target >= {IMAGES_PER_CORE_SECOND}: "
        f"{_verdict(n / with_features >= IMAGES_PER_CORE_SECOND)}); "
        f"ORB adds {(with_features - plain) / n * 1000:.1f} ms an image"
    )
    return [fingerprint(blob, with_features=True) for blob in blobs]


def _record_photos(store: Store, fingerprints: list[Fingerprint]) -> list[int]:
    """Record the photos through the write path; their image ids, in order."""
    store.record(
        [
            Sighting(fp, f"file:///bench/{number}.jpg", "file:///bench/")
            for number, fp in enumerate(fingerprints)
        ]
    )
    with store.pool.connection() as conn:
        ids = dict(conn.execute("SELECT sha256, id FROM images").fetchall())
    return [ids[fp.sha256] for fp in fingerprints]


def _report_fill(
    report: Report, url: str, count: int, synthetic: Synthetic, tally: KeyTally, photos: int
) -> None:
    started = time.perf_counter()
    with connect(url, autocommit=True) as conn:
        with indexes_dropped(conn, _CHUNK_INDEXES):
            images_s, features_s = _fill(conn, count, synthetic, tally)
            indexed = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) images")  # sets the visibility map: index-only scans
        conn.execute("VACUUM (ANALYZE) image_features")
    rest = time.perf_counter() - indexed
    report.line(
        f"data: {photos} photos from the folder + {count:,} synthetic images (random hashes; "
        f"features: {synthetic.describe()})"
    )
    report.line(
        f"fill: COPY images {images_s:.0f} s, COPY image_features {features_s:.0f} s, "
        f"chunk indexes + VACUUM {rest:.0f} s; {time.perf_counter() - started:.0f} s in all"
    )


def _report_storage(report: Report, url: str, images: int) -> None:
    with connect(url) as conn:
        table = conn.execute("SELECT pg_total_relation_size('image_features')").fetchone()[0]  # type: ignore[index]
    report.line(
        f"stored per image: image_features {table / images:,.0f} B "
        "(pg_total_relation_size: heap + TOAST + index, / images)"
    )


def _report_build(report: Report, store: Store, images: int) -> None:
    before = _rss()
    total, ids, reads, add = _timed_refresh(store)
    grown = _rss() - before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    indexed = len(store.features)
    report.line(
        f"index build from PostgreSQL (refresh_features on an empty index): {indexed:,} "
        f"images in {total / 1000:.1f} s ({indexed / total * 1000:,.0f} images/s; "
        f"ids {ids / 1000:.1f} s, feature reads {reads / 1000:.1f} s, FeatureIndex.add_many with "
        f"its merges {add / 1000:.1f} s besides the reads)"
    )
    report.line(
        f"index in memory: arrays {store.features.nbytes / images:,.0f} B per image, "
        f"process RSS +{grown / images:,.0f} B per image (+{grown / 2**20:,.0f} MB); "
        f"process peak so far {peak / 2**30:.1f} GB"
    )


def _report_search(report: Report, store: Store, queries: list[Query], tally: KeyTally) -> None:
    described = [query.describe_ms for query in queries]
    views = [query.description_ms for query in queries]
    report.line(
        f"query image to description (fingerprint as_query=True): p50 "
        f"{statistics.median(described):.0f} ms, of which ORB x2 + 9 views' hashes "
        f"{statistics.median(views):.0f} ms"
    )
    robust = _search_all(store, queries, robust=True)
    hash_only = _search_all(store, queries, robust=False)
    p50, p99 = statistics.median(robust.total_ms), percentile(robust.total_ms, 0.99)
    met = p50 <= SEARCH_P50_MS and p99 <= SEARCH_P99_MS
    edits = len({query.edit for query in queries})
    report.line(
        f"robust Store.search, {len(queries)} edited copies ({edits} edits): p50 {p50:.0f} ms, "
        f"p99 {p99:.0f} ms (target p50 <= {SEARCH_P50_MS}, p99 <= {SEARCH_P99_MS}: "
        f"{_verdict(met)}); the edited photo found for {sum(robust.found_photo)}"
    )
    report.line(
        f"  of that, this process's CPU p50 {statistics.median(robust.cpu_ms):.0f} ms; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    pairs = zip(queries, robust.found_photo, strict=True)
    missed = Counter(query.edit for query, found in pairs if not found)
    if missed:
        report.line(
            "  not found, by edit: " + ", ".join(f"{e} {n}" for e, n in missed.most_common())
        )
    report.line(
        f"hash-only Store.search, the same queries' hashes: p50 "
        f"{statistics.median(hash_only.total_ms):.1f} ms, "
        f"p99 {percentile(hash_only.total_ms, 0.99):.1f} ms"
    )
    _report_stages(report, robust)
    _report_postings(report, queries, tally, len(store.features))


def _report_stages(report: Report, robust: Timed) -> None:
    report.line(f"{'robust stage':<34}{'p50 ms':>8}{'p99 ms':>8}{'calls':>7}")
    for stage in (_VIEWS, _CANDIDATES, _READS, _FACTS, _VERIFY, _ROWS):
        values = [stages.get(stage, 0.0) for stages in robust.stages]
        calls = statistics.median(calls.get(stage, 0) for calls in robust.calls)
        counted = f"{'-':>7}" if stage in (_VIEWS, _ROWS) else f"{calls:>7.0f}"
        report.line(
            f"{stage:<34}{statistics.median(values):>8.1f}{percentile(values, 0.99):>8.1f}{counted}"
        )


def _report_postings(
    report: Report, queries: Sequence[Query], tally: KeyTally, images: int
) -> None:
    """How full the buckets a query reads are, and what tallying that many votes costs alone:
    the floor of the candidates stage, whatever else it does."""
    read = [
        tally.postings(
            [
                query.description.features.upright.descriptors,
                query.description.features.mirrored.descriptors,
            ]
        )
        for query in queries
    ]
    postings = statistics.median(total for total, _ in read)
    distinct = statistics.median(count for _, count in read)
    report.line(
        f"candidates read ~{postings:,.0f} postings a query (median) under {distinct:,.0f} "
        f"keys, ~{postings / distinct:,.0f} a key (estimated from 1 in {_SAMPLED_BLOCK} "
        "synthetic blocks)"
    )
    report.line(
        f"  floor: np.bincount of that many votes into {images:,} images takes "
        f"{_vote_floor_ms(images, round(postings)):.0f} ms here"
    )


def _vote_floor_ms(images: int, postings: int) -> float:
    rng = np.random.default_rng(5)
    positions = rng.integers(0, images, size=postings)
    weights = rng.random(postings)
    votes = np.zeros(images)
    started = time.perf_counter()
    votes += np.bincount(positions, weights=weights, minlength=images)
    return (time.perf_counter() - started) * 1000


def _report_refresh(report: Report, url: str, store: Store, synthetic: Synthetic) -> None:
    """Batch after batch of new images, as crawlers write them: most refreshes only add a
    segment, and the one that makes too many merges the small ones (or all of them)."""
    rounds = []
    for _ in range(REFRESH_ROUNDS):
        with connect(url, autocommit=True) as conn:
            _fill(conn, REFRESH_BATCH, synthetic, None)
        rounds.append(_timed_refresh(store))
    ordered = sorted(rounds, key=lambda timed: timed[0])
    median, (worst, *parts) = ordered[len(ordered) // 2], ordered[-1]
    report.line(
        f"refresh: {REFRESH_BATCH:,} new images at a time, {REFRESH_ROUNDS} times: median "
        f"{median[0]:.0f} ms, slowest {worst:.0f} ms (ids to look at {parts[0]:.0f} ms, "
        f"feature reads {parts[1]:.0f} ms, FeatureIndex.add_many with any merge {parts[2]:.0f} ms "
        "besides the reads)"
    )


def _timed_refresh(store: Store) -> tuple[float, float, float, float]:
    """(total, ids, feature reads, index add) milliseconds of one refresh_features(). The
    index takes the feature reads as it goes (add_many pulls pages of rows), so its own time is
    add_many's less the reads."""
    watch = Stopwatch()
    with watch.watching([(stored_features, "read", "read"), (store.features, "add_many", "add")]):
        started = time.perf_counter()
        store.refresh_features()
        total = (time.perf_counter() - started) * 1000
    ms, _ = watch.take()
    return total, total - ms["add"], ms["read"], ms["add"] - ms["read"]
