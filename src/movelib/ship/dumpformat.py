"""The seed dump's format, in one place: what ``inv dump`` writes is what ``inv restore`` expects.

A dump is data, not a script. All of it but the rows is SQL that movelib renders itself from
its own migrations and the known column lists (:func:`render`): the header, the DROP and the
DDL of the migrations, yoyo's tables, each table's ``COPY ... FROM stdin;`` line, the sequence
resets and the footer. The rows are ``COPY`` blocks of known tables with known columns, in a
known order. The writer fills the rendering's holes with rows; the reader (``dumpreader``)
compares a file against the same rendering byte for byte.

The file stays what ``psql -1 -v ON_ERROR_STOP=1 -f FILE`` applies (the deployment guide's
Method 4): plain SQL statements and COPY blocks, no meta-commands.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..base.defaults import CLIENT_ENCODING
from ..base.errors import ArtifactError
from ..database.tables import MOVEMENT_TABLES
from ..database.yoyo_tables import YOYO_COLUMNS, YOYO_DDL, YOYO_LOCK_TABLE, YOYO_TABLES

# The columns each migration adds to the dumped movement tables, in PostgreSQL's attnum order:
# the "known column lists" a restore accepts, without asking any database. A migration that
# changes a dumped table's columns is entered here; tests/test_forged_dumps.py migrates every
# prefix of migrations/ and compares, and ``inv dump`` refuses a source whose columns differ.
MIGRATION_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "0001.movement-library": {
        "movement_seed_run": ("id", "data_file", "data_sha256", "movement_count",
                              "published_count", "unchanged_count", "tool_version", "run_by",
                              "db_user", "started_at", "finished_at"),
        "movement_staging": ("id", "slug", "version", "status", "document", "content_hash",
                             "seed_run_id", "created_at", "updated_at"),
        "movement_audit_log": ("id", "action", "slug", "version", "actor", "occurred_at",
                               "seed_run_id", "details"),
        "movement_library": ("id", "slug", "version", "name", "classification", "equipment",
                             "primary_muscles", "secondary_muscles", "level", "instructions",
                             "aliases", "laterality", "force", "mechanic", "coaching_cues",
                             "content_hash", "published_at", "published_by", "staging_id",
                             "seed_run_id"),
    },
    "0002.movement-versions": {
        "movement_seed_run": ("new_version_count", "retired_count"),
        "movement_current": ("slug", "version", "library_id", "since"),
    },
    # movement_provenance, which no dump carries or drops (see tables.PROVENANCE_TABLE): its
    # DDL is in the dump, its rows are not, and the DROP line is the same as before it.
    "0003.movement-provenance": {},
    # the database's content checks: functions and triggers, no column changes
    "0004.movement-content": {},
    # whom the database trusts (movelib.ship.trust): like provenance, never carried or dropped
    "0005.movement-trust": {},
    # the content hash inlined: functions only
    "0006.movement-content-inline": {},
    # the guards let a recorded restore remove a version; provenance columns only
    "0007.movement-restore-merge": {},
    # the trust log chained (movelib.ship.trust_log): a table the dump does not carry
    "0008.movement-trust-chain": {},
}
# The label belongs to each database (a restore keeps the target's); the manifest records it.
NOT_DUMPED = ("movement_environment",)

# What a dump's head sets before its DDL, as ``psql -f`` applies it (for its session).
HEAD_SETTINGS = (f"SET client_encoding = '{CLIENT_ENCODING}';", "SET standard_conforming_strings = on;",
                 "SET check_function_bodies = false;", "SET client_min_messages = warning;")


def transaction_scoped(head: bytes) -> bytes:
    """``head`` with its settings made ``SET LOCAL``: run by ``inv restore`` inside its
    transaction, they end with it instead of staying on a pooled server connection."""
    for line in HEAD_SETTINGS:
        head = head.replace(f"\n{line}\n".encode(),
                            f"\n{line.replace('SET ', 'SET LOCAL ', 1)}\n".encode(), 1)
    return head
FOOTER = b"-- end of movelib seed dump\n"

# What may be spliced into the rendering: no whitespace, no quote, no line break. The manifest
# schema says the same; this is the last word, where the text becomes SQL.
_WORD = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+!_:-]*")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_FUNCTION = re.compile(
    rb"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(([^)]*)\)",
    re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]

    @property
    def spec(self) -> str:
        """``"table" ("column", ...)``, each name checked to need no escaping."""
        return f"{_quote(self.name)} ({', '.join(map(_quote, self.columns))})"

    @property
    def header(self) -> str:
        return f"COPY {self.spec} FROM stdin;"

    @property
    def opening(self) -> bytes:
        """What precedes the block's rows in the file: a blank line and the COPY line."""
        return f"\n{self.header}\n".encode()


@dataclass(frozen=True)
class Layout:
    """Everything of a dump but its rows: ``head``, then per table ``opening``, rows and
    ``END_OF_DATA``, then ``tail``."""

    migrations: tuple[str, ...]
    head: bytes
    tables: tuple[Table, ...]
    tail: bytes


def _quote(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ArtifactError(f"{name!r} is not a table or column name movelib dumps")
    return f'"{name}"'


def _word(value: str, what: str) -> str:
    if not _WORD.fullmatch(value):
        raise ArtifactError(f"the {what} {value[:40]!r} cannot go into a dump's header")
    return value


def columns_for(migrations: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The dumped tables and their columns once ``migrations`` are applied, in load order."""
    found: dict[str, tuple[str, ...]] = {}
    for migration in migrations:
        for table, added in MIGRATION_COLUMNS.get(migration, {}).items():
            found[table] = found.get(table, ()) + added
    return {**YOYO_COLUMNS, **{t: found[t] for t in MOVEMENT_TABLES
                              if t in found and t not in NOT_DUMPED}}


def dumped_tables() -> tuple[str, ...]:
    """Every table a dump of this checkout may hold (the manifest's row_counts keys)."""
    return (*YOYO_TABLES, *(t for t in MOVEMENT_TABLES if t not in NOT_DUMPED))


def render(migrations: Sequence[tuple[str, bytes]], created_at: str, tool_version: str) -> Layout:
    """The fixed SQL of a dump of a database holding ``migrations`` (id, SQL text), written at
    ``created_at`` (the manifest's ``...Z`` stamp) by movelib ``tool_version``."""
    ids = [_word(m, "migration id") for m, _ in migrations]
    written = _word(created_at, "creation time")
    written = written[:-1] + "+00:00" if written.endswith("Z") else written
    functions = sorted({(name + b"()" if not args.strip() else name).decode()
                        for _, text in migrations for name, args in _FUNCTION.findall(text)})
    head = [
        "-- movelib seed dump (format 1): the movement library, its workflow and audit trail.",
        f"-- written {written} by movelib {_word(tool_version, 'tool version')}; apply with",
        "-- `inv restore --dump-file FILE` or `psql -1 -v ON_ERROR_STOP=1 -f FILE`.",
        *HEAD_SETTINGS,
        "",
        "DROP TABLE IF EXISTS " + ", ".join(
            [*reversed(MOVEMENT_TABLES), *YOYO_TABLES, YOYO_LOCK_TABLE]) + " CASCADE;",
        # a function with arguments is dropped by its name alone (unique in the schema)
        *(f"DROP FUNCTION IF EXISTS {fn} CASCADE;" for fn in functions),
        "",
    ]
    parts = ["\n".join(head).encode()]
    for migration_id, text in migrations:
        parts.append(f"\n-- migration {migration_id}\n".encode())
        # line endings as git stores them: a Windows checkout renders the same bytes
        parts.append(text.replace(b"\r\n", b"\n").rstrip() + b"\n")
    parts.append(b"\n-- yoyo's bookkeeping: `inv migrate` finds every migration applied\n")
    parts.append(YOYO_DDL.encode())

    tables = tuple(Table(t, cols) for t, cols in columns_for(ids).items())
    tail = [b"\n"]
    for table in tables:
        if table.name in MOVEMENT_TABLES and "id" in table.columns:
            tail.append(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false);\n".encode())
    tail.append(FOOTER)
    return Layout(tuple(ids), b"".join(parts), tables, b"".join(tail))
