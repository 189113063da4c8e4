"""``inv dump``: a portable, checksummed SQL artifact of the movement library.

The dump is plain SQL that both ``inv restore`` and ``psql -1 -v ON_ERROR_STOP=1 -f`` can apply:
DROP + CREATE of the movement tables with their functions and triggers (the DDL of the
migrations the source has applied), yoyo's bookkeeping (so ``inv migrate`` is a no-op after a
restore), then every row as ``COPY ... FROM stdin`` blocks, in id order. It is written from one
REPEATABLE READ snapshot through psycopg's COPY, so it needs no pg_dump and carries none of its
version-specific lines (``\\restrict``, ``SET transaction_timeout``) that older servers reject.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from . import __version__, db
from .errors import ArtifactError
from .manifest import (
    HashingWriter,
    Manifest,
    atomic_file,
    copy_atomically,
    manifest_path,
    write_atomically,
)
from .target import Target
from .verify import require_schema

Echo = Callable[[str], None]

# Load order (parents before children). Identity columns get their sequences reset.
MOVEMENT_TABLES = (
    "movement_environment",
    "movement_seed_run",
    "movement_staging",
    "movement_audit_log",
    "movement_library",
    "movement_current",
)
YOYO_TABLES = ("_yoyo_version", "_yoyo_migration", "_yoyo_log")
ORDER_BY = {
    "movement_environment": "singleton",
    "movement_current": "slug",
    "_yoyo_version": "version",
    "_yoyo_migration": "applied_at_utc, migration_hash",
    "_yoyo_log": "created_at_utc, id",
}
# yoyo's own tables as yoyo 9 creates them (internal schema version 2).
YOYO_DDL = """\
CREATE TABLE _yoyo_version (version integer NOT NULL PRIMARY KEY, installed_at_utc timestamp);
CREATE TABLE _yoyo_migration (migration_hash varchar(64) NOT NULL PRIMARY KEY,
    migration_id varchar(255), applied_at_utc timestamp);
CREATE TABLE _yoyo_log (id varchar(36) NOT NULL PRIMARY KEY, migration_hash varchar(64),
    migration_id varchar(255), operation varchar(10), username varchar(255),
    hostname varchar(255), comment varchar(255), created_at_utc timestamp);
CREATE TABLE yoyo_lock (locked integer DEFAULT 1 NOT NULL PRIMARY KEY, ctime timestamp,
    pid integer NOT NULL);
"""
LATEST = "movements_seed_latest"
FOOTER = b"-- end of movelib seed dump\n"


@dataclass(frozen=True)
class DumpResult:
    path: Path
    manifest_path: Path
    manifest: Manifest
    latest: Path | None


def _applied_migrations(conn: psycopg.Connection, migrations_dir: Path) -> list[tuple[str, Path]]:
    from yoyo import read_migrations

    known = {m.id: Path(m.path) for m in read_migrations(str(migrations_dir))}
    applied = [r[0] for r in conn.execute(
        "SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc, migration_id")]
    unknown = [m for m in applied if m not in known]
    if unknown:
        raise ArtifactError(
            f"the source has migrations this checkout does not know ({', '.join(unknown)}); "
            "dump it with the movelib version that migrated it"
        )
    pending = [m for m in known if m not in applied]
    if pending:
        raise ArtifactError(
            f"the source lacks migrations {', '.join(pending)}: run `inv migrate` on it first, "
            "so the dump's schema is this checkout's"
        )
    return [(m, known[m]) for m in applied]


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", (table,))]


def _functions(conn: psycopg.Connection) -> list[str]:
    """The movement functions of the source, as signatures for DROP FUNCTION."""
    return [r[0] for r in conn.execute(
        r"""SELECT p.oid::regprocedure::text FROM pg_proc p
             WHERE p.pronamespace = current_schema()::regnamespace
               AND p.proname LIKE 'movement\_%' ORDER BY 1""")]


def _scalar(conn: psycopg.Connection, query: str) -> object:
    row = conn.execute(query).fetchone()
    return row[0] if row else None


def dump_name(now: datetime) -> str:
    return f"movements_seed_{now:%Y%m%d_%H%M%S}.sql"


def dump(
    target: Target,
    migrations_dir: Path,
    output_dir: Path,
    *,
    release: str | None = None,
    update_latest: bool = True,
    now: datetime | None = None,
) -> DumpResult:
    """Write a dump of ``target``'s movement library into ``output_dir``."""
    now = now or datetime.now(UTC)
    path = output_dir / dump_name(now)
    if path.exists():
        raise ArtifactError(f"{path} already exists; wait a second and dump again")
    with db.connect(target, task="dump") as conn:
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            require_schema(conn, target)
            migrations = _applied_migrations(conn, migrations_dir)
            with atomic_file(path) as handle:
                out = HashingWriter(handle)
                counts = _write(conn, out, migrations, now)
            info = conn.execute(
                "SELECT data_file, data_sha256 FROM movement_seed_run ORDER BY id DESC LIMIT 1"
            ).fetchone()
            versions = {
                str(v): int(n) for v, n in conn.execute(
                    "SELECT version, count(*) FROM movement_library GROUP BY version ORDER BY version")
            }
            manifest = Manifest(
                dump_file=path.name,
                size=out.size,
                sha256=out.digest.hexdigest(),
                row_counts=counts,
                migrations=[m for m, _ in migrations],
                data_file=info[0] if info else None,
                data_sha256=info[1] if info else None,
                source_server_version=str(_scalar(conn, "SHOW server_version")).split()[0],
                environment=_environment(conn),
                created_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                tool_version=__version__,
                release=release,
                movement_versions=versions,
            )
            conn.rollback()
        except psycopg.Error as exc:
            path.unlink(missing_ok=True)
            db.raise_sql_error(target, exc, "the dump")
            raise
    mpath = manifest_path(path)
    write_atomically(mpath, manifest.to_json().encode())  # the manifest last
    latest = None
    if update_latest:
        latest = output_dir / f"{LATEST}.sql"
        copy_atomically(path, latest)
        write_atomically(manifest_path(latest), manifest.to_json().encode())
    return DumpResult(path, mpath, manifest, latest)


def _environment(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT label FROM movement_environment").fetchone()
    return str(row[0]) if row else None


def _write(
    conn: psycopg.Connection,
    out: HashingWriter,
    migrations: list[tuple[str, Path]],
    now: datetime,
) -> dict[str, int]:
    head = [
        "-- movelib seed dump (format 1): the movement library, its workflow and audit trail.",
        f"-- written {now.isoformat(timespec='seconds')} by movelib {__version__}; apply with",
        "-- `inv restore --dump-file FILE` or `psql -1 -v ON_ERROR_STOP=1 -f FILE`.",
        "SET client_encoding = 'UTF8';",
        "SET standard_conforming_strings = on;",
        "SET check_function_bodies = false;",
        "SET client_min_messages = warning;",
        "",
        "DROP TABLE IF EXISTS " + ", ".join(
            [*reversed(MOVEMENT_TABLES), *YOYO_TABLES, "yoyo_lock"]) + " CASCADE;",
        *(f"DROP FUNCTION IF EXISTS {fn} CASCADE;" for fn in _functions(conn)),
        "",
    ]
    out.write("\n".join(head).encode())
    for migration_id, file in migrations:
        out.write(f"\n-- migration {migration_id}\n".encode())
        out.write(file.read_bytes().rstrip() + b"\n")
    out.write(b"\n-- yoyo's bookkeeping: `inv migrate` finds every migration applied\n")
    out.write(YOYO_DDL.encode())

    counts: dict[str, int] = {}
    for table in (*YOYO_TABLES, *MOVEMENT_TABLES):
        if table == "movement_environment":
            continue  # the label belongs to each database; the manifest records the source's
        columns = _columns(conn, table)
        column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
        order = sql.SQL(ORDER_BY.get(table, "id"))  # constants above, never user input
        out.write(b"\n" + sql.SQL("COPY {} ({}) FROM stdin;\n").format(
            sql.Identifier(table), column_list).as_bytes(conn))
        cur = conn.cursor()
        with cur.copy(sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT").format(
                column_list, sql.Identifier(table), order)) as copy:
            buffer: list[bytes] = []
            size = 0
            for chunk in copy:  # one row per chunk: write them a megabyte at a time
                buffer.append(bytes(chunk))
                size += len(chunk)
                if size >= 1 << 20:
                    out.write(b"".join(buffer))
                    buffer.clear()
                    size = 0
            out.write(b"".join(buffer))
        out.write(b"\\.\n")
        counts[table] = cur.rowcount

    out.write(b"\n")
    for table in MOVEMENT_TABLES:
        if "id" in _columns(conn, table):
            out.write(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false);\n".encode()
            )
    out.write(FOOTER)
    return counts
