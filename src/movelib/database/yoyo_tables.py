"""yoyo's bookkeeping, the one place that knows its internals: its tables as yoyo 9 creates
them (what a dump carries and a migration run creates where missing), its key for a migration,
and the rows it reads back. movelib writes these rows itself, inside its own transaction, so
the ``yoyo`` command still reads and rolls back what movelib applied."""

from __future__ import annotations

import getpass
import hashlib
import socket
import uuid
from typing import TYPE_CHECKING

import psycopg

from ..base.errors import MigrationError
from .tables import table_exists

if TYPE_CHECKING:
    from .target import Target

YOYO_MIGRATION_TABLE = "_yoyo_migration"  # one row per applied migration
# yoyo's bookkeeping, as a dump carries it (its lock table is recreated empty, never copied).
YOYO_TABLES = ("_yoyo_version", YOYO_MIGRATION_TABLE, "_yoyo_log")
YOYO_LOCK_TABLE = "yoyo_lock"

# yoyo's own tables as yoyo 9 creates them (internal schema version 2); a dump carries this text
# byte for byte (line breaks included), so it never changes.
_YOYO_DEFINITIONS = (
    ("_yoyo_version", "(version integer NOT NULL PRIMARY KEY, installed_at_utc timestamp)"),
    ("_yoyo_migration", "(migration_hash varchar(64) NOT NULL PRIMARY KEY,\n"
                        "    migration_id varchar(255), applied_at_utc timestamp)"),
    ("_yoyo_log", "(id varchar(36) NOT NULL PRIMARY KEY, migration_hash varchar(64),\n"
                  "    migration_id varchar(255), operation varchar(10), username varchar(255),\n"
                  "    hostname varchar(255), comment varchar(255), created_at_utc timestamp)"),
    ("yoyo_lock", "(locked integer DEFAULT 1 NOT NULL PRIMARY KEY, ctime timestamp,\n"
                  "    pid integer NOT NULL)"),
)


def yoyo_ddl(*, if_not_exists: bool = False) -> str:
    """yoyo's tables' DDL; ``if_not_exists`` for a database that may hold some of them."""
    create = "CREATE TABLE IF NOT EXISTS" if if_not_exists else "CREATE TABLE"
    return "".join(f"{create} {name} {columns};\n" for name, columns in _YOYO_DEFINITIONS)


YOYO_DDL = yoyo_ddl()
YOYO_COLUMNS: dict[str, tuple[str, ...]] = {
    "_yoyo_version": ("version", "installed_at_utc"),
    "_yoyo_migration": ("migration_hash", "migration_id", "applied_at_utc"),
    "_yoyo_log": ("id", "migration_hash", "migration_id", "operation", "username", "hostname",
                  "comment", "created_at_utc"),
}
YOYO_SCHEMA_VERSION = 2  # the one row of _yoyo_version that YOYO_DDL stands for


def yoyo_hash(migration_id: str) -> str:
    """yoyo's key for a migration in its bookkeeping (``get_migration_hash``), without importing
    yoyo: the sha256 of the migration's id."""
    return hashlib.sha256(migration_id.encode("utf-8")).hexdigest()


def applied_ids(conn: psycopg.Connection) -> list[str]:
    """The migrations yoyo's bookkeeping records as applied, in the order they were; none when
    it has no bookkeeping yet."""
    if not table_exists(conn, YOYO_MIGRATION_TABLE):
        return []
    return [r[0] for r in conn.execute(
        f"SELECT migration_id FROM {YOYO_MIGRATION_TABLE} ORDER BY applied_at_utc, migration_id")]


def record_applied(conn: psycopg.Connection, migration_id: str, comment: str) -> None:
    """Record ``migration_id`` as applied, in the rows yoyo writes for an apply."""
    digest = yoyo_hash(migration_id)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    conn.execute(f"INSERT INTO {YOYO_MIGRATION_TABLE} (migration_hash, migration_id, "
                 "applied_at_utc) VALUES (%s, %s, now() AT TIME ZONE 'UTC')",
                 (digest, migration_id))
    conn.execute("INSERT INTO _yoyo_log (id, migration_hash, migration_id, operation, username,"
                 " hostname, comment, created_at_utc) VALUES (%s, %s, %s, 'apply', %s, %s, %s, "
                 "now() AT TIME ZONE 'UTC')",
                 (str(uuid.uuid1()), digest, migration_id, user[:255],
                  socket.getfqdn()[:255], comment[:255]))


def ensure_bookkeeping(conn: psycopg.Connection, target: Target) -> None:
    """yoyo's tables, as yoyo 9 creates them, where they are missing."""
    if table_exists(conn, "_yoyo_version"):
        row = conn.execute("SELECT max(version) FROM _yoyo_version").fetchone()
        if row is None or row[0] != YOYO_SCHEMA_VERSION:
            raise MigrationError(
                f"yoyo's bookkeeping on {target.describe()} is at version "
                f"{row[0] if row else None}, not {YOYO_SCHEMA_VERSION}: upgrade it with "
                "yoyo 9 (`yoyo list`), then run again")
    conn.execute(yoyo_ddl(if_not_exists=True))
    conn.execute("INSERT INTO _yoyo_version (version, installed_at_utc) SELECT %s, "
                 "now() AT TIME ZONE 'UTC' WHERE NOT EXISTS (SELECT FROM _yoyo_version)",
                 (YOYO_SCHEMA_VERSION,))
