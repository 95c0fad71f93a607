"""The test-only average48 kind's tables (tests/plugin_kind)."""

import psycopg

from lookalike.store.kind_tables import create_tables
from tests.plugin_kind import KIND


def upgrade(conn: psycopg.Connection) -> None:
    create_tables(conn, KIND)
