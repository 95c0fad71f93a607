"""`lookalike index` plumbing: the URLs recorded for files, and a run stopped by its database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from lookalike import indexer
from lookalike.fingerprint import fingerprint
from tests.images import encode, photo


def test_sightings_name_the_resolved_file_through_linked_folders_and_files(tmp_path: Path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.jpg").write_bytes(encode(photo(1, (64, 48))))
    (tmp_path / "linked").symlink_to(real)
    (real / "b.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    (tmp_path / "elsewhere.jpg").write_bytes(encode(photo(2, (64, 48))))
    fp = fingerprint(encode(photo(1, (64, 48))))
    folders: dict[Path, Path] = {}
    for path in (real / "a.jpg", tmp_path / "linked" / "a.jpg", tmp_path / "linked" / "b.jpg"):
        sighting = indexer.sighting_for(path, fp, folders)
        assert sighting.image_url == path.resolve().as_uri()
        assert sighting.page_url == path.resolve().parent.as_uri() + "/"
        assert sighting.page_title == path.resolve().parent.name


def test_an_unreachable_database_stops_the_run_before_the_rest_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(200):
        (folder / f"{n:03d}.jpg").write_bytes(encode(photo(n, (64, 48))))
    fifo = folder / "zz.jpg"
    os.mkfifo(fifo)  # reading it waits for a writer
    env = {**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nowhere"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lookalike", "index", str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        with contextlib.suppress(OSError):  # no reader: nothing to release
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # a stuck reader gets EOF
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot connect to the database at 127.0.0.1:9/nowhere: ")
