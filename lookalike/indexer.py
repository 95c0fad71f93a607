"""Index folders of image files: fingerprint on every core, record in batches.

Each file becomes a sighting whose image URL is its ``file://`` URL and whose page is its
folder, so local files and crawled pages answer the same search.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from lookalike.fingerprint import Fingerprint, ImageRejected, Rejection, fingerprint
from lookalike.store import Sighting, Store

BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class FileResult:
    path: Path
    fingerprint: Fingerprint | None = None
    rejected: ImageRejected | None = None  # why the file was skipped, when fingerprint is None

    @property
    def reason(self) -> str | None:
        """Why the file was skipped, in one line for a person."""
        return None if self.rejected is None else str(self.rejected)


@dataclass(slots=True)
class IndexSummary:
    indexed: int = 0  # files recorded
    new_images: int = 0  # distinct contents the database did not have
    duplicates: int = 0  # files byte-identical to one met earlier in this run
    rejected: Counter[Rejection] = field(default_factory=Counter)  # skipped files by kind

    @property
    def already_known(self) -> int:
        """Files whose content the database held before this run."""
        return self.indexed - self.new_images - self.duplicates


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
            missing.append(FileResult(path, rejected=ImageRejected(Rejection.NO_SUCH_FILE)))
    return found, missing


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder, onerror=None):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root, name)


def fingerprint_file(
    path: Path, with_thumbnail: bool = False, *, as_query: bool = False
) -> FileResult:
    """Read and fingerprint one file; never raises, so one bad file cannot stop a run.

    ``with_thumbnail`` makes the small WebP the site shows from the same bytes, read once.
    A file is described to be stored (its local features), or ``as_query`` to be searched for.
    """
    try:
        data = read_image_file(path)
        found = fingerprint(
            data, with_thumbnail=with_thumbnail, with_features=not as_query, as_query=as_query
        )
        return FileResult(path, fingerprint=found)
    except ImageRejected as error:
        return FileResult(path, rejected=error)


def read_image_file(path: Path) -> bytes:
    """The file's bytes, or :class:`ImageRejected` saying why they cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageRejected(Rejection.NO_SUCH_FILE) from None
    except OSError as error:
        raise ImageRejected(Rejection.UNREADABLE, error.strerror or str(error)) from None


def fingerprint_files(
    paths: list[Path], workers: int | None = None, *, with_thumbnails: bool = True
) -> Iterator[FileResult]:
    """Fingerprint ``paths`` on ``workers`` processes (default: every core), in order."""
    with fingerprinting(paths, workers, with_thumbnails=with_thumbnails) as results:
        yield from results


@contextmanager
def fingerprinting(
    paths: list[Path], workers: int | None = None, *, with_thumbnails: bool = True
) -> Iterator[Iterator[FileResult]]:
    """Start fingerprinting ``paths`` at once; yields their results, in order, as they come.

    The workers start on entry, so they hash while the caller opens the database (applying
    the schema took up to 0.6 s, as long as hashing 1,000 small photos); on exit the files not
    yet started are dropped, so a failed database stops the run at once.
    """
    workers = workers or os.cpu_count() or 1
    work = partial(fingerprint_file, with_thumbnail=with_thumbnails)
    if workers == 1 or len(paths) < 2:
        yield map(work, paths)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            yield pool.map(work, paths, chunksize=8)
        finally:
            pool.shutdown(cancel_futures=True)


def sighting_for(path: Path, fp: Fingerprint, folders: dict[Path, Path]) -> Sighting:
    """The file's sighting; ``folders`` holds the folders resolved so far in this run.

    Resolving a path reads every folder on it (four ``lstat`` calls a file here), so each
    folder is resolved once and only a symlinked file itself is followed again.
    """
    if (folder := folders.get(path.parent)) is None:
        folder = folders[path.parent] = path.parent.resolve()
    absolute = folder / path.name
    if absolute.is_symlink():
        absolute = absolute.resolve()
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
    """Record fingerprinted files in batches; rejected files are counted by kind."""
    summary = IndexSummary()
    batch: list[Sighting] = []
    contents_seen: set[str] = set()
    folders: dict[Path, Path] = {}

    def flush() -> None:
        summary.new_images += store.record(batch).new_images
        summary.indexed += len(batch)
        batch.clear()

    for result in results:
        on_result(result)
        if result.rejected is not None:
            summary.rejected[result.rejected.kind] += 1
            continue
        if result.fingerprint.sha256 in contents_seen:
            summary.duplicates += 1
        contents_seen.add(result.fingerprint.sha256)
        batch.append(sighting_for(result.path, result.fingerprint, folders))
        if len(batch) >= BATCH_SIZE:
            flush()
    if batch:
        flush()
    return summary
