"""`lookalike serve` runs the site on waitress; `flask --app searchweb` finds the factory."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request

from lookalike.store import Sighting, Store
from tests.served import free_port
from tests.web_support import fp, jpeg


def _get_json(url: str, deadline: float) -> dict:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_serve_answers_on_the_chosen_port(store: Store, cli_env: dict[str, str]) -> None:
    store.record([Sighting(fp(jpeg(1)), "http://a.test/x.jpg", "http://a.test/")])
    port = free_port()
    server = subprocess.Popen(
        ["lookalike", "serve", "--port", str(port), "--workers", "2"],
        env=cli_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stats = _get_json(f"http://127.0.0.1:{port}/api/stats", time.monotonic() + 30)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert (stats["images"], stats["pages"]) == (1, 1)
    assert f"serving 1 image on http://127.0.0.1:{port}/ with 2 workers" in stderr


def test_serve_without_a_database_says_so_in_one_line(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    done = subprocess.run(
        ["lookalike", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Error: cannot connect to the database at 127.0.0.1:9/none")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_flask_cli_finds_the_app_factory(cli_env: dict[str, str]) -> None:
    done = subprocess.run(
        ["flask", "--app", "searchweb", "routes"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for route in ("/api/search", "/search", "/compare/<int:image_id>", "/api/openapi.json"):
        assert route in done.stdout
