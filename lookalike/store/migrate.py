"""Numbered schema migrations, and schema.sql's functions and views kept current.

Tables change only through the files in ``lookalike/store/migrations/``: each is applied once, in
order, in its own transaction, and recorded in ``schema_migrations`` with its checksum. A
migration is ``NNNN_name.sql``, or ``NNNN_name.py`` defining ``upgrade(conn)`` where the DDL is
derived rather than written out (a hash kind's tables, from its bit length).

Functions and views are the last part of schema.sql instead: CREATE OR REPLACE
cannot change a function's arguments or return type, so whenever that text changes, or a
migration has been applied since (some functions are made from tables: each hash kind's
probes), the ones made before are dropped and the new ones created, in one transaction
(``schema_functions`` records which). A start that finds nothing to do costs two queries and
takes no lock.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg
from psycopg import sql

from lookalike.config import DatabaseUnavailable
from lookalike.wording import first_line, plural

# Any constant works: it only has to be the same in every process migrating, so that two
# programs starting at once apply each migration once.
LOCK_KEY = 0x10_0C_A1_1C
FUNCTIONS_MARKER = "-- Functions and views "
_MIGRATION_FILE = re.compile(r"(\d{4})_[a-z0-9_]+\.(sql|py)")
_DEFINED = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|VIEW)\s+(\w+)", re.I | re.M)

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS schema_functions (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    checksum    text NOT NULL,
    functions   text[] NOT NULL,  -- as regprocedure prints them
    views       text[] NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""

# Our objects in the schema new ones are created in, as the catalog prints (and quotes) them.
_OBJECTS_HERE = """
SELECT ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
             WHERE p.pronamespace = current_schema()::regnamespace
               AND p.proname = ANY (%(names)s) ORDER BY 1),
       ARRAY(SELECT c.oid::regclass::text FROM pg_class c
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'v'
               AND c.relname = ANY (%(names)s) ORDER BY 1)
"""
# Every function and view in that schema by object id: one dropped and created again gets a
# new id, so comparing ids before and after tells what the functions part made.
_OBJECT_IDS_HERE = """
SELECT p.oid, p.oid::regprocedure::text, false FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace
UNION ALL
SELECT c.oid, c.oid::regclass::text, true FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'v'
"""
_RECORDED_STILL_THERE = """
SELECT ARRAY(SELECT to_regprocedure(f)::text FROM unnest(%s::text[]) f
             WHERE to_regprocedure(f) IS NOT NULL),
       ARRAY(SELECT c.oid::regclass::text FROM unnest(%s::text[]) v
             JOIN pg_class c ON c.oid = to_regclass(v) AND c.relkind = 'v')
"""


class MigrationError(DatabaseUnavailable):
    """The schema could not be brought up to date; nothing was changed by the failing step."""


def checksum(text: str) -> str:
    """SHA-256 of a script, the same whichever line endings a checkout gave it."""
    return hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str  # the file's text: SQL, or Python defining upgrade(conn)

    @property
    def checksum(self) -> str:
        return checksum(self.sql)

    def apply(self, conn: psycopg.Connection) -> None:
        if not self.name.endswith(".py"):
            conn.execute(self.sql.encode())
            return
        namespace: dict[str, object] = {"__name__": f"lookalike_migration_{self.version:04d}"}
        exec(compile(self.sql, self.name, "exec"), namespace)  # noqa: S102 (our own file)
        upgrade = namespace.get("upgrade")
        if not callable(upgrade):
            raise TypeError(f"{self.name} defines no upgrade(conn)")
        upgrade(conn)


@dataclass(frozen=True)
class Schema:
    """What the code wants: its migrations, in order, and the functions-and-views text."""

    migrations: tuple[Migration, ...]
    functions: str

    @classmethod
    def read(cls, folder: Traversable, schema_sql: str) -> Schema:
        """The ``NNNN_name.sql`` and ``.py`` files of ``folder`` and the functions part of
        ``schema_sql``."""
        migrations = []
        for entry in folder.iterdir():
            if not entry.name.endswith((".sql", ".py")) or entry.name == "__init__.py":
                continue
            matched = _MIGRATION_FILE.fullmatch(entry.name)
            if matched is None:
                raise ValueError(
                    f"{entry.name}: a migration is named NNNN_lowercase_words.sql (or .py)"
                )
            text = entry.read_text(encoding="utf-8")
            migrations.append(Migration(int(matched.group(1)), entry.name, text))
        migrations.sort(key=lambda m: m.version)
        versions = [m.version for m in migrations]
        if len(set(versions)) != len(versions):
            raise ValueError(f"two migrations share a version number in {folder}")
        return cls(tuple(migrations), functions_part(schema_sql))

    @property
    def defined_names(self) -> list[str]:
        """Names of the functions and views the functions part creates."""
        return sorted({name.lower() for _kind, name in _DEFINED.findall(self.functions)})


@functools.cache
def shipped_schema() -> Schema:
    """The migrations and schema.sql installed with this package."""
    package = resources.files("lookalike.store")
    schema_sql = package.joinpath("schema.sql").read_text(encoding="utf-8")
    return Schema.read(package.joinpath("migrations"), schema_sql)


def functions_part(schema_sql: str) -> str:
    """schema.sql from its "Functions and views" line to the end."""
    starts = [m.start() for m in re.finditer(f"^{re.escape(FUNCTIONS_MARKER)}", schema_sql, re.M)]
    if len(starts) != 1:
        raise ValueError(f"schema.sql needs exactly one line starting {FUNCTIONS_MARKER!r}")
    return schema_sql[starts[0] :]


@dataclass(frozen=True)
class Applied:
    name: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True)
class State:
    """What a database records; a database never migrated records nothing."""

    applied: Mapping[int, Applied]
    functions_checksum: str | None = None
    functions: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    all_present: bool = False  # every recorded function and view still exists

    def pending(self, schema: Schema) -> list[Migration]:
        return [m for m in schema.migrations if m.version not in self.applied]

    def functions_current(self, schema: Schema) -> bool:
        return self.all_present and self.functions_checksum == self.functions_wanted(schema)

    def functions_wanted(self, schema: Schema) -> str:
        """The checksum of the functions part as made after the applied migrations: a new
        migration makes them again, as some are made from tables (each hash kind's probes)."""
        applied = ",".join(f"{version:04d}" for version in sorted(self.applied))
        return checksum(f"{schema.functions}\n-- after migrations {applied}\n")

    def unknown(self, schema: Schema) -> list[int]:
        """Versions applied by a newer Lookalike."""
        return sorted(set(self.applied) - {m.version for m in schema.migrations})

    def edited(self, schema: Schema) -> list[int]:
        """Versions whose file changed since they were applied."""
        return [
            m.version
            for m in schema.migrations
            if m.version in self.applied and self.applied[m.version].checksum != m.checksum
        ]

    def refusal(self, schema: Schema, where: str) -> str | None:
        """Why this code must not touch the database: a newer one, or an edited migration."""
        if unknown := self.unknown(schema):
            return (
                f"the database at {where} has migration {self.applied[unknown[-1]].name}, which "
                "this Lookalike does not know: it was migrated by a newer version; upgrade"
            )
        if edited := self.edited(schema):
            return (
                f"migration {edited[0]:04d} was edited after it was applied to {where} (its "
                "checksum differs from the recorded one); put it back and write a new migration"
            )
        return None

    def up_to_date(self, schema: Schema) -> bool:
        return not self.pending(schema) and self.functions_current(schema)


def read_state(conn: psycopg.Connection) -> State:
    """The recorded state, in two queries and without a lock."""
    (ready,) = conn.execute(
        "SELECT to_regclass('schema_migrations') IS NOT NULL"
        " AND to_regclass('schema_functions') IS NOT NULL"
    ).fetchone()
    if not ready:
        return State(applied={})
    row = conn.execute(
        """
        SELECT m.versions, m.names, m.checksums, m.times, f.checksum, f.functions, f.views,
               coalesce(cardinality(f.functions) = (SELECT count(*) FROM unnest(f.functions) x
                                                     WHERE to_regprocedure(x) IS NOT NULL)
                        AND cardinality(f.views) = (SELECT count(*) FROM unnest(f.views) v
                            JOIN pg_class c ON c.oid = to_regclass(v) AND c.relkind = 'v'),
                        false)
        FROM (SELECT coalesce(array_agg(version ORDER BY version), '{}') AS versions,
                     coalesce(array_agg(name ORDER BY version), '{}') AS names,
                     coalesce(array_agg(checksum ORDER BY version), '{}') AS checksums,
                     coalesce(array_agg(applied_at ORDER BY version), '{}') AS times
              FROM schema_migrations) m
        LEFT JOIN schema_functions f ON true
        """
    ).fetchone()
    versions, names, sums, times, functions_sum, functions, views, present = row
    applied = {v: Applied(n, s, t) for v, n, s, t in zip(versions, names, sums, times, strict=True)}
    return State(applied, functions_sum, tuple(functions or ()), tuple(views or ()), present)


def bring_up_to_date(
    conn: psycopg.Connection,
    where: str,
    schema: Schema | None = None,
    on_step: Callable[[str], None] | None = None,
) -> list[str]:
    """Apply every pending migration, then the functions and views if they changed.

    Returns what was done, one line each (also given to ``on_step`` as each step commits).
    ``conn`` must not be inside a transaction. Refuses a newer or edited database before
    changing anything, and re-checks under the lock, so concurrent programs each do a step
    at most once between them.
    """
    schema = schema or shipped_schema()
    state = _read_state(conn, where)
    conn.rollback()  # end read_state's transaction: each step takes its own
    _refuse(state, schema, where)
    if state.up_to_date(schema):
        return []
    done: list[str] = []

    def report(line: str | None) -> None:
        if line:  # None: another program did this step while this one waited for the lock
            done.append(line)
            if on_step:
                on_step(line)

    for migration in state.pending(schema):
        report(_apply_migration(conn, where, schema, migration))
    report(_apply_functions(conn, where, schema))
    return done


def _read_state(conn: psycopg.Connection, where: str) -> State:
    try:
        return read_state(conn)
    except psycopg.Error as error:  # e.g. no privilege to read schema_migrations
        raise MigrationError(
            f"cannot read the schema state of {where}: {first_line(error)}"
        ) from None


def status(conn: psycopg.Connection, where: str, schema: Schema | None = None) -> list[str]:
    """``lookalike migrate --status``, changing nothing: see :func:`describe`."""
    schema = schema or shipped_schema()
    return describe(_read_state(conn, where), schema)


def _refuse(state: State, schema: Schema, where: str) -> None:
    if reason := state.refusal(schema, where):
        raise MigrationError(reason)


def _locked(conn: psycopg.Connection, schema: Schema, where: str) -> State:
    """Inside a transaction: take the lock, make the bookkeeping tables, read the state again."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    conn.execute("SET LOCAL client_min_messages = warning")
    conn.execute(_BOOKKEEPING)
    state = read_state(conn)
    _refuse(state, schema, where)
    return state


def _apply_migration(
    conn: psycopg.Connection, where: str, schema: Schema, migration: Migration
) -> str | None:
    try:
        with conn.transaction():
            if migration.version in _locked(conn, schema, where).applied:
                return None
            migration.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    except (psycopg.Error, TypeError) as error:
        raise MigrationError(
            f"cannot apply migration {migration.name} to {where}: {first_line(error)}"
        ) from None
    return f"applied migration {migration.name}"


def _apply_functions(conn: psycopg.Connection, where: str, schema: Schema) -> str | None:
    try:
        with conn.transaction():
            state = _locked(conn, schema, where)
            if state.functions_current(schema):
                return None
            dropped = _drop_previous(conn, state, schema)
            before = {oid for oid, _, _ in conn.execute(_OBJECT_IDS_HERE)}
            conn.execute(schema.functions.encode())
            made = [
                row for row in conn.execute(_OBJECT_IDS_HERE).fetchall() if row[0] not in before
            ]
            functions = sorted(name for _, name, is_view in made if not is_view)
            views = sorted(name for _, name, is_view in made if is_view)
            conn.execute(
                "INSERT INTO schema_functions (checksum, functions, views) VALUES (%s, %s, %s)"
                " ON CONFLICT (singleton) DO UPDATE SET checksum = excluded.checksum,"
                " functions = excluded.functions, views = excluded.views, applied_at = now()",
                (state.functions_wanted(schema), functions, views),
            )
    except psycopg.errors.DependentObjectsStillExist as error:
        # e.g. "view my_view depends on view image_sightings": say which, and never CASCADE
        dependent = "".join((error.diag.message_detail or "").splitlines()[:1])
        raise MigrationError(
            f"cannot apply schema.sql to {where}: {dependent or first_line(error)}; "
            "drop it, migrate, then create it again"
        ) from None
    except psycopg.Error as error:
        raise MigrationError(f"cannot apply schema.sql to {where}: {first_line(error)}") from None
    verb = "re-created" if dropped else "created"
    return (
        f"{verb} the functions and views of schema.sql "
        f"({plural(len(functions), 'function')}, {plural(len(views), 'view')})"
    )


def _objects_here(conn: psycopg.Connection, names: Iterable[str]) -> tuple:
    """Our functions and views called ``names``, as the catalog prints them."""
    return conn.execute(_OBJECTS_HERE, {"names": list(names)}).fetchone()


def _drop_previous(conn: psycopg.Connection, state: State, schema: Schema) -> int:
    """Drop the functions and views made before (views first; never CASCADE): those recorded,
    or on a database from before the record, every one named like those schema.sql defines.
    Returns how many were dropped."""
    if state.functions_checksum is None:
        functions, views = _objects_here(conn, schema.defined_names)
    else:
        functions, views = conn.execute(
            _RECORDED_STILL_THERE, (list(state.functions), list(state.views))
        ).fetchone()
    # Names as the catalog prints them (quoted where needed), not text from outside.
    if views:
        conn.execute(sql.SQL("DROP VIEW {}").format(sql.SQL(", ".join(views))))
    if functions:
        conn.execute(sql.SQL("DROP FUNCTION {}").format(sql.SQL(", ".join(functions))))
    return len(functions) + len(views)


def describe(state: State, schema: Schema) -> list[str]:
    """``--status``: one line per migration (applied when, or pending), then the functions."""
    lines = []
    known = {m.version: m.name for m in schema.migrations}
    notes = dict.fromkeys(state.unknown(schema), "  (not known to this Lookalike)")
    notes.update(dict.fromkeys(state.edited(schema), "  (edited since it was applied)"))
    for version in sorted({*known, *state.applied}):
        applied = state.applied.get(version)
        if applied is None:
            lines.append(f"{known[version]}  pending")
        else:
            when = f"{applied.applied_at:%Y-%m-%d %H:%M:%S %Z}"
            lines.append(f"{applied.name}  applied {when}{notes.get(version, '')}")
    if state.functions_checksum is None:
        functions = "not created yet"
    elif state.functions_current(schema):
        functions = "current"
    else:
        functions = "changed (re-created on the next migrate)"
    lines.append(f"functions and views: {functions}")
    return lines
