"""Index folders of image files: fingerprint on every core, record in batches.

Each file becomes a sighting whose image URL is its ``file://`` URL and whose page is its
folder, so local files and crawled pages answer the same search.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.fingerprint import Fingerprint, ImageRejected, fingerprint
from lookalike.store import Sighting, Store

BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class FileResult:
    path: Path
    fingerprint: Fingerprint | None = None
    reason: str | None = None  # why the file was skipped, when fingerprint is None


@dataclass(slots=True)
class IndexSummary:
    indexed: int = 0  # files recorded
    new_images: int = 0  # distinct contents the database did not have
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def already_known(self) -> int:
        """Files whose content was already stored (including copies within this run)."""
        return self.indexed - self.new_images


def find_files(paths: Iterable[Path]) -> tuple[list[Path], list[FileResult]]:
    """Regular files under ``paths`` (recursively, hidden names skipped), and missing paths."""
    found: list[Path] = []
    missing: list[FileResult] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(_walk(path))
        else:
            missing.append(FileResult(path, reason="no such file or directory"))
    return found, missing


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder, onerror=None):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root, name)


def fingerprint_file(path: Path) -> FileResult:
    """Read and fingerprint one file; never raises, so one bad file cannot stop a run."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return FileResult(path, reason="no such file (removed while running?)")
    except OSError as error:
        return FileResult(path, reason=f"unreadable: {error.strerror or error}")
    try:
        return FileResult(path, fingerprint=fingerprint(data))
    except ImageRejected as error:
        return FileResult(path, reason=str(error))


def fingerprint_files(paths: list[Path], workers: int | None = None) -> Iterator[FileResult]:
    """Fingerprint ``paths`` on ``workers`` processes (default: every core), in order."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < 2:
        yield from map(fingerprint_file, paths)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fingerprint_file, paths, chunksize=8)


def sighting_for(path: Path, fp: Fingerprint) -> Sighting:
    absolute = path.resolve()
    return Sighting(
        fingerprint=fp,
        image_url=absolute.as_uri(),
        page_url=absolute.parent.as_uri() + "/",
        page_title=absolute.parent.name or None,
    )


def index_files(
    store: Store,
    results: Iterable[FileResult],
    on_result: Callable[[FileResult], None] = lambda result: None,
) -> IndexSummary:
    """Record fingerprinted files in batches; rejected files are counted by reason."""
    summary = IndexSummary()
    batch: list[Sighting] = []

    def flush() -> None:
        summary.new_images += store.record(batch).new_images
        summary.indexed += len(batch)
        batch.clear()

    for result in results:
        on_result(result)
        if result.fingerprint is None:
            summary.rejected[rejection_kind(result.reason or "")] += 1
            continue
        batch.append(sighting_for(result.path, result.fingerprint))
        if len(batch) >= BATCH_SIZE:
            flush()
    if batch:
        flush()
    return summary


def rejection_kind(reason: str) -> str:
    """The part of a reason before its details: 'image too large: 9×9 px' → 'image too large'."""
    return reason.split(":", 1)[0]
