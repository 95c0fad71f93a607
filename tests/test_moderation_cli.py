"""`lookalike flag / unflag / check / banks` as upload hooks run them: exit codes, output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import ImageOps

from benchmarks.moderation import disguises
from lookalike.features.orb import BANK_FEATURES, DESCRIPTOR_BYTES
from lookalike.features.verify import MIN_INLIERS
from lookalike.fingerprint import fingerprint
from lookalike.store.db import connect
from tests.images import encode, photo, textured_photo
from tests.test_banks import BANNED
from tests.test_cli import run

ORIGINAL = photo(21, (800, 600))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {
        "original.jpg": encode(ORIGINAL, "JPEG", quality=92),
        "resized.jpg": encode(ORIGINAL.resize((400, 300)), "JPEG"),
        "q30.jpg": encode(ORIGINAL, "JPEG", quality=30),
        "gray.png": encode(ORIGINAL.convert("L"), "PNG"),
        "border.png": encode(ImageOps.expand(ORIGINAL, border=1, fill="black"), "PNG"),
        "unrelated1.jpg": encode(photo(31), "JPEG"),
        "unrelated2.png": encode(photo(32), "PNG"),
        "notes.txt": b"not an image",
    }
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in made}


def test_check_exits_3_on_flagged_copies_0_when_clean_1_when_nothing_checked(
    cli_env: dict[str, str], files: dict[str, Path]
) -> None:
    flagged = run(cli_env, "flag", str(files["original.jpg"]), "--reason", "spam", "--by", "amy")
    assert flagged.returncode == 0, flagged.stderr
    assert "flagged in banned as entry" in flagged.stdout

    copies = [str(files[name]) for name in ("resized.jpg", "q30.jpg", "gray.png", "border.png")]
    checked = run(cli_env, "check", *copies, "--json")
    assert checked.returncode == 3, checked.stderr
    report = json.loads(checked.stdout)
    assert [item["file"] for item in report] == copies
    for item in report:
        assert item["flagged"] is True
        (match,) = item["matches"]
        assert (match["bank"], match["reason"]) == ("banned", "spam")
        assert set(match) == {"bank", "distance", "reason", "flagged_at", "entry_id", "relation"}

    clean = run(cli_env, "check", str(files["unrelated1.jpg"]), str(files["unrelated2.png"]))
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.splitlines() == [
        f"{files['unrelated1.jpg']}: clean",
        f"{files['unrelated2.png']}: clean",
    ]

    mixed = run(cli_env, "check", str(files["notes.txt"]), str(files["q30.jpg"]))
    assert mixed.returncode == 3
    assert f"{files['notes.txt']}: not an image" in mixed.stderr

    nothing = run(cli_env, "check", str(files["notes.txt"]), str(files["notes.txt"]) + ".gone")
    assert nothing.returncode == 1
    assert "not an image" in nothing.stderr


def test_usage_errors_exit_2_and_user_errors_1_without_traceback(
    cli_env: dict[str, str], files: dict[str, Path]
) -> None:
    assert run(cli_env, "flag").returncode == 2
    assert run(cli_env, "flag", "--dhash", "not-hex").returncode == 2
    assert run(cli_env, "check", "--max-distance", "15", str(files["q30.jpg"])).returncode == 2
    unknown_bank = run(cli_env, "check", "--bank", "nope", str(files["q30.jpg"]))
    assert unknown_bank.returncode == 2
    assert "no bank named 'nope'" in unknown_bank.stderr
    bad_name = run(cli_env, "flag", "--dhash", "00ff00ff00ff00ff", "--bank", "No Spaces")
    assert (bad_name.returncode, bad_name.stderr.strip()) == (
        1,
        "Error: bad bank name 'No Spaces': use 1-63 lowercase letters, digits, '-' or '_'",
    )
    missing_image = run(cli_env, "flag", "--image-id", "12345")
    assert (missing_image.returncode, missing_image.stderr.strip()) == (
        1,
        "Error: no image with id 12345 in the database",
    )
    assert "no banks yet" in run(cli_env, "banks").stdout  # the failures wrote nothing


def test_unflag_disables_an_entry_and_check_stops_matching(
    cli_env: dict[str, str], files: dict[str, Path]
) -> None:
    dhash = fingerprint(files["original.jpg"].read_bytes()).hex("dhash")
    assert run(cli_env, "flag", "--dhash", dhash, "--bank", "copyright").returncode == 0
    assert run(cli_env, "check", str(files["resized.jpg"])).returncode == 3

    unflagged = run(cli_env, "unflag", "--dhash", dhash, "--by", "lead")
    assert unflagged.returncode == 0, unflagged.stderr
    assert f"in copyright (dHash {dhash})" in unflagged.stdout

    assert run(cli_env, "check", str(files["resized.jpg"])).returncode == 0
    assert run(cli_env, "unflag", "--dhash", dhash).returncode == 1  # nothing active left
    listed = run(cli_env, "banks").stdout
    assert listed.split() == [
        "copyright",
        "dHash",
        "<=",
        "8,",
        "pHash",
        "<=",
        "12",
        "0",
        "active",
        "1",
        "disabled",
    ]


def test_check_catches_a_flagged_picture_mirrored_or_cropped_and_says_how(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    made = {"banned.png": encode(BANNED, "PNG"), "unrelated.png": encode(textured_photo(80), "PNG")}
    made |= {f"{name}.png": make(BANNED) for name, make in disguises().items()}
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    assert run(cli_env, "flag", str(tmp_path / "banned.png"), "--reason", "banned").returncode == 0
    with connect(cli_env["DATABASE_URL"]) as conn:  # a flagged picture keeps more features
        stored = conn.execute("SELECT length(features) FROM bank_entry_features").fetchall()
    assert stored == [(5 + BANK_FEATURES * (4 + DESCRIPTOR_BYTES),)]

    mirrored, cropped = tmp_path / "mirror.png", tmp_path / "crop centre 60%.png"
    checked = run(cli_env, "check", str(mirrored), str(cropped), "--json")
    assert checked.returncode == 3, checked.stderr
    relations = [item["matches"][0]["relation"] for item in json.loads(checked.stdout)]
    assert [(r["method"], r["mirrored"]) for r in relations] == [
        ("hash", True),
        ("features", False),
    ]
    assert relations[1]["inliers"] >= MIN_INLIERS

    described = run(cli_env, "check", str(cropped)).stdout.splitlines()
    assert described[0] == f"{cropped}: FLAGGED"
    assert re.search(r"entry 1, \d+ features agree, the query is 3\d% of it, flagged", described[1])
    assert run(cli_env, "check", str(tmp_path / "unrelated.png")).returncode == 0
