"""The `lookalike` command as a user runs it: real subprocesses, real PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from lookalike import indexer
from lookalike.cli import cli
from lookalike.fingerprint import Rejection
from lookalike.store import Store
from lookalike.store.db import scratch_database
from tests.images import (
    CORRUPT_PNGS,
    declared_png,
    encode,
    photo,
    png_with_tiny_idat,
    rejected_samples,
)
from tests.test_fingerprint import _many_frame_gif
from tests.web_support import running_app

BAD_FILES = {
    "empty.jpg": b"",
    "random.jpg": bytes(range(256)) * 8,
    "page.jpg": b"<!doctype html><html><title>x</title></html>",
    "drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg"></svg>',
    "bomb.png": png_with_tiny_idat(30000, 30000),
    "long.png": declared_png(2, 25_000_000, idat=b""),
    **{f"corrupt-{n}.png": data for n, data in enumerate(CORRUPT_PNGS.values())},
}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with one photo's resized and re-compressed copies, unrelated photos, bad files."""
    folder = tmp_path / "photos"
    (folder / "copies").mkdir(parents=True)
    original = photo(1, (1024, 768))
    (folder / "original.jpg").write_bytes(encode(original, "JPEG", quality=92))
    (folder / "copies" / "small.jpg").write_bytes(encode(original.resize((400, 300)), "JPEG"))
    (folder / "copies" / "q30.jpg").write_bytes(encode(original, "JPEG", quality=30))
    (folder / "copies" / "resaved.png").write_bytes(encode(original.resize((800, 600)), "PNG"))
    for seed in range(2, 8):
        (folder / f"unrelated{seed}.jpg").write_bytes(encode(photo(seed), "JPEG"))
    for name, data in BAD_FILES.items():
        (folder / name).write_bytes(data)
    truncated = encode(photo(9, (800, 600)), "JPEG")
    (folder / "truncated.jpg").write_bytes(truncated[: len(truncated) // 2])
    (folder / "animated.gif").write_bytes(_many_frame_gif(3000))
    return folder


def test_index_then_search_finds_copies_and_nothing_unrelated(
    cli_env, photos: Path, tmp_path
) -> None:
    indexed = run(cli_env, "index", str(photos))
    assert indexed.returncode == 0, indexed.stderr
    assert indexed.stdout.strip() == (
        "indexed 11 files (11 new images, 0 duplicates, 0 already known); rejected 11 "
        "(truncated or corrupt image: 5, not an image: 2, image too large: 1, "
        "unsupported format: 1, empty file: 1, image too long: 1)"
    )
    for name in [*BAD_FILES, "truncated.jpg"]:
        assert f"{photos / name}: " in indexed.stderr
    assert "bomb.png: image too large: 30000×30000 px (limit 50 MP)" in indexed.stderr

    query = tmp_path / "query.jpg"
    query.write_bytes(encode(photo(1, (1024, 768)).resize((640, 480)), "JPEG", quality=60))
    found = run(cli_env, "search", str(query))
    assert found.returncode == 0, found.stderr
    header, *lines = found.stdout.splitlines()
    assert header.split() == ["bits", "size", "image", "on", "page"]
    names = [Path(line.split()[2]).name for line in lines]
    assert sorted(names) == ["original.jpg", "q30.jpg", "resaved.png", "small.jpg"]
    distances = [int(line.split()[0]) for line in lines]
    assert distances == sorted(distances) and distances[-1] <= 10


def test_search_json_is_one_list_of_matches_with_sightings(cli_env, photos: Path) -> None:
    run(cli_env, "index", str(photos / "copies"))
    result = run(cli_env, "search", "--json", "--max-distance", "12", str(photos / "original.jpg"))
    matches = json.loads(result.stdout)
    assert len(matches) == 3
    for match in matches:
        assert set(match) >= {"distance", "sha256", "width", "height", "sightings"}
        (sighting,) = match["sightings"]
        assert sighting["image_url"].startswith("file:///")
        assert sighting["page_url"] == (photos / "copies").resolve().as_uri() + "/"
        assert set(sighting) >= {"first_seen", "last_seen"}


def test_indexing_again_changes_nothing_but_last_seen(cli_env, photos: Path) -> None:
    first = run(cli_env, "index", str(photos / "copies"))
    second = run(cli_env, "index", str(photos / "copies"))
    assert "(3 new images, 0 duplicates, 0 already known)" in first.stdout
    assert "(0 new images, 0 duplicates, 3 already known)" in second.stdout
    assert re.search(r"^sightings +3$", run(cli_env, "stats").stdout, re.MULTILINE)


def test_hash_prints_dhash_phash_size_and_file(cli_env, photos: Path) -> None:
    cut = photos / "corrupt-0.png"
    result = run(cli_env, "hash", str(photos / "original.jpg"), str(photos / "empty.jpg"), str(cut))
    assert result.returncode == 0
    dhash, phash, size, name = result.stdout.split()
    assert len(dhash) == len(phash) == 16 and size == "1024×768"
    assert name == str(photos / "original.jpg")
    empty, corrupt = result.stderr.strip().splitlines()
    assert empty == f"{photos / 'empty.jpg'}: empty file"
    assert corrupt.startswith(f"{cut}: truncated or corrupt image: ")
    as_json = json.loads(run(cli_env, "hash", "--json", str(photos / "original.jpg")).stdout)
    assert as_json[0]["dhash"] == dhash


def test_nothing_to_do_exits_1_and_keeps_what_is_stored(cli_env, photos: Path, tmp_path) -> None:
    run(cli_env, "index", str(photos / "copies"))
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "page.jpg").write_bytes(BAD_FILES["page.jpg"])
    result = run(cli_env, "index", str(only_bad), str(tmp_path / "missing"))
    assert result.returncode == 1
    assert f"{tmp_path / 'missing'}: no such file or directory" in result.stderr
    assert re.search(r"^sightings +3$", run(cli_env, "stats").stdout, re.MULTILINE)
    missing = run(cli_env, "search", str(tmp_path / "nope.jpg"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"Error: {tmp_path / 'nope.jpg'}: no such file or directory"
    also_missing = run(cli_env, "index", str(tmp_path / "nope.jpg"))
    assert also_missing.stderr.startswith(f"{tmp_path / 'nope.jpg'}: no such file or directory\n")


def test_unreachable_database_is_one_line_and_exit_1(cli_env, photos: Path) -> None:
    env = {**cli_env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nowhere"}
    result = run(env, "index", str(photos / "copies"))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot connect to the database at 127.0.0.1:9/nowhere: ")


@pytest.mark.parametrize(
    "args", [["search"], ["search", "--max-distance", "-1", "x.jpg"], ["frobnicate"]]
)
def test_usage_errors_exit_2(cli_env, args: list[str]) -> None:
    result = run(cli_env, *args)
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_a_file_that_vanishes_mid_run_is_reported_and_the_rest_indexed(store: Store, photos: Path):
    files, _ = indexer.find_files([photos / "copies"])
    files[0].unlink()  # listed, then removed before it is read
    seen: list[indexer.FileResult] = []
    summary = indexer.index_files(store, indexer.fingerprint_files(files), on_result=seen.append)
    assert summary.indexed == 2
    assert summary.rejected == {"no such file or directory": 1}
    assert seen[0].reason == "no such file or directory"


def test_the_summary_counts_each_kind_of_rejection_on_worker_processes(
    store: Store, tmp_path: Path
) -> None:
    files = [tmp_path / f"{n}.img" for n in range(len(rejected_samples()))]
    for path, data in zip(files, rejected_samples().values(), strict=True):
        path.write_bytes(data)
    unreadable = tmp_path / "a folder.jpg"
    unreadable.mkdir()
    results = indexer.fingerprint_files([*files, unreadable], workers=2)
    summary = indexer.index_files(store, results)
    assert summary.rejected == {kind: 1 for kind in [*rejected_samples(), Rejection.UNREADABLE]}
    assert summary.indexed == 0


def test_a_schema_that_cannot_be_applied_is_one_line_and_exit_1(cli_env, database_url) -> None:
    from lookalike.store.db import connect

    with connect(database_url, autocommit=True) as conn:  # an object schema.sql cannot replace
        conn.execute("DROP VIEW image_sightings CASCADE")
        conn.execute("CREATE TABLE image_sightings (x int)")
    result = run(cli_env, "init-db")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot apply schema.sql to ")
    assert '"image_sightings" is not a view' in line


def test_byte_identical_files_are_duplicates_and_one_is_one_file(cli_env, tmp_path) -> None:
    folder = tmp_path / "same"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_bytes(encode(photo(1), "JPEG"))
    first = run(cli_env, "index", str(folder))
    assert first.stdout.strip() == (
        "indexed 3 files (1 new image, 2 duplicates, 0 already known); rejected 0"
    )
    again = run(cli_env, "index", str(folder / "a.jpg"))
    assert again.stdout.strip() == (
        "indexed 1 file (0 new images, 0 duplicates, 1 already known); rejected 0"
    )


def test_search_shows_file_matches_as_typed_paths_not_urls(cli_env, tmp_path) -> None:
    folder = tmp_path / "my photos"
    folder.mkdir()
    (folder / "été 1.jpg").write_bytes(encode(photo(1), "JPEG"))
    run(cli_env, "index", str(folder))
    found = subprocess.run(
        [sys.executable, "-m", "lookalike", "search", "my photos/été 1.jpg"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.stdout.splitlines()[1].split("  ")[-2:] == [
        "my photos/été 1.jpg",
        "on my photos/",
    ]


def test_psql_runs_on_the_database_in_use_with_arguments_passed_through(
    cli_env, photos: Path, database_url: str
) -> None:
    run(cli_env, "index", str(photos / "copies"))
    assert run(cli_env, "db-url").stdout.strip() == database_url
    result = run(
        cli_env, "psql", "-A", "-t", "-c", "SELECT count(*) FROM similar_images(0::bigint, 64)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    failed = run(cli_env, "psql", "-v", "ON_ERROR_STOP=1", "-c", "SELECT no_such_function()")
    assert failed.returncode != 0 and "no_such_function" in failed.stderr
    assert "PostgreSQL interactive terminal" in run(cli_env, "psql", "--help").stdout


def _commands(group: click.Group, ctx: click.Context) -> Iterator[click.Command]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield command
        if isinstance(command, click.Group):
            yield from _commands(command, ctx)


def test_every_option_of_every_command_has_help_text() -> None:
    ctx = click.Context(cli)
    undocumented = [
        f"{command.name} {param.opts[0]}"
        for command in _commands(cli, ctx)
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert undocumented == []


def test_the_command_list_is_not_cut_off_and_serve_names_the_embedded_default(cli_env) -> None:
    listed = run({**cli_env, "COLUMNS": "80"}, "--help").stdout.split("Commands:")[1]
    assert "..." not in listed and "…" not in listed
    assert "psql" in listed and "db-url" in listed
    serve_help = " ".join(run(cli_env, "serve", "--help").stdout.split())
    assert "embedded PostgreSQL under $LOOKALIKE_HOME" in serve_help


def test_indexed_files_have_thumbnails_through_the_api(cli_env, photos: Path, database_url) -> None:
    run(cli_env, "index", str(photos / "copies"))
    run(cli_env, "index", "--no-thumbnails", str(photos / "original.jpg"))
    with running_app(database_url) as app:
        response = app.test_client().post(
            "/api/search", data={"image": ((photos / "original.jpg").open("rb"), "q.jpg")}
        )
    thumbnails = {
        Path(match["sightings"][0]["image_url"]).name: match["thumbnail_url"]
        for match in response.get_json()["matches"]
    }
    assert thumbnails.pop("original.jpg") is None  # --no-thumbnails, and no web URL to show
    assert sorted(thumbnails) == ["q30.jpg", "resaved.png", "small.jpg"]
    for url in thumbnails.values():
        assert re.search(r"/thumbnails/\d+\.webp$", url)


def test_psql_applies_the_schema_first_and_says_when_psql_is_missing(
    cli_env, server_url: str
) -> None:
    with scratch_database(server_url, "lookalike_test_psql") as fresh:  # no schema yet
        env = {**cli_env, "DATABASE_URL": fresh}
        result = run(env, "psql", "-At", "-c", "SELECT hamming(1, 3)")
        assert result.stdout.strip() == "1", result.stderr
        missing = run({**env, "PATH": "/nonexistent"}, "psql", "-c", "SELECT 1")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: psql not found: install the PostgreSQL client"
