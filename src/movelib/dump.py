"""``inv dump``: a portable, checksummed SQL artifact of the movement library.

The dump is plain SQL that both ``inv restore`` and ``psql -1 -v ON_ERROR_STOP=1 -f`` can apply:
DROP + CREATE of the movement tables with their functions and triggers (the DDL of the
migrations the source has applied), yoyo's bookkeeping (so ``inv migrate`` is a no-op after a
restore), then every row as ``COPY ... FROM stdin`` blocks. Everything is read from one
REPEATABLE READ snapshot: the rows by psql importing that snapshot (or by psycopg's COPY), so it
needs no pg_dump and carries none of its version-specific lines (``\\restrict``,
``SET transaction_timeout``) that older servers reject.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from . import __version__, db
from .errors import ArtifactError, InvalidTarget
from .manifest import (
    BackgroundWriter,
    HashingWriter,
    Manifest,
    atomic_file,
    link_atomically,
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
    reader: str = "auto",
    bin_dir: str | None = None,
) -> DumpResult:
    """Write a dump of ``target``'s movement library into ``output_dir``.

    ``reader`` says who reads the rows: ``psql`` (PostgreSQL's client, in C: as fast as
    pg_dump), ``psycopg`` (no external program), or ``auto``: psql where it is installed
    (the embedded PostgreSQL wheel brings one; ``bin_dir`` names another), except on Windows.
    """
    psql = _psql_for(reader, bin_dir)
    if psql is not None and reader == "auto":
        try:
            target.libpq_env()
        except InvalidTarget:  # a connection parameter psql cannot take from its environment
            psql = None
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
                writer = BackgroundWriter(out)
                try:
                    counts = _write(conn, writer, migrations, now, target, psql)
                finally:
                    writer.close()
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
        link_atomically(path, latest)  # the same bytes under a second name
        write_atomically(manifest_path(latest), manifest.to_json().encode())
    return DumpResult(path, mpath, manifest, latest)


def _environment(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT label FROM movement_environment").fetchone()
    return str(row[0]) if row else None


def _write(
    conn: psycopg.Connection,
    out: BackgroundWriter,
    migrations: list[tuple[str, Path]],
    now: datetime,
    target: Target,
    psql: Path | None,
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

    # (table, '"table" ("column", ...)'), quoted once by psycopg for both readers
    tables = [(t, sql.SQL("{} ({})").format(sql.Identifier(t), sql.SQL(", ").join(
                  map(sql.Identifier, _columns(conn, t)))).as_string(conn))
              for t in (*YOYO_TABLES, *MOVEMENT_TABLES)
              # the label belongs to each database; the manifest records the source's
              if t != "movement_environment"]
    for setting in SESSION_SETTINGS:
        conn.execute(setting)
    if psql is not None:
        from concurrent.futures import ThreadPoolExecutor

        # psql exports nothing back; the counts come from this transaction's snapshot (the one
        # psql imports), counted on this connection while psql streams the rows
        snapshot = str(_scalar(conn, "SELECT pg_export_snapshot()"))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="movelib-count") as pool:
            counting = pool.submit(lambda: {table: _count(conn, table) for table, _ in tables})
            _copy_with_psql(target, psql, snapshot, tables, out)
            counts = counting.result()
    else:
        counts = {table: _copy_with_psycopg(conn, spec, out) for table, spec in tables}

    out.write(b"\n")
    for table in MOVEMENT_TABLES:
        if "id" in _columns(conn, table):
            out.write(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false);\n".encode()
            )
    out.write(FOOTER)
    return counts


# How every row is written, whatever the server's defaults (pg_dump sets the same).
SESSION_SETTINGS = ("SET datestyle = ISO", "SET intervalstyle = postgres",
                    "SET extra_float_digits = 3", "SET TIME ZONE 'UTC'")


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def _copy_with_psycopg(conn: psycopg.Connection, spec: str, out: BackgroundWriter) -> int:
    """One table's COPY block, read through psycopg (one Python call per row)."""
    out.write(f"\nCOPY {spec} FROM stdin;\n".encode())
    cur = conn.cursor()
    # Table order, like pg_dump: ids are kept, so row order carries no meaning.
    with cur.copy(f"COPY {spec} TO STDOUT") as copy:
        rows: list[bytes | bytearray | memoryview] = []  # joined into a new block
        size = 0
        for row in copy:  # one row per message: written a megabyte at a time
            rows.append(row)
            size += len(row)
            if size >= 1 << 20:
                out.write(b"".join(rows))
                rows.clear()
                size = 0
        out.write(b"".join(rows))
    out.write(b"\\.\n")
    return cur.rowcount


def _psql_for(reader: str, bin_dir: str | None) -> Path | None:
    if reader not in ("auto", "psql", "psycopg"):
        raise ArtifactError(f"unknown dump reader {reader!r}; expected auto, psql or psycopg")
    if reader == "psycopg" or (reader == "auto" and sys.platform == "win32"):
        return None
    from .errors import ConfigError
    from .psql import tool_path

    try:
        return tool_path("psql", bin_dir)
    except ConfigError:
        if reader == "psql":
            raise
        return None


def _copy_with_psql(target: Target, psql: Path, snapshot: str,
                    tables: list[tuple[str, str]], out: BackgroundWriter) -> None:
    """Every table's COPY block, read by psql inside this connection's snapshot.

    psql imports ``snapshot``, exported by the dump's REPEATABLE READ transaction, so it sees
    exactly what the rest of the dump (and its row counts) sees. It gets the password through its
    environment, never its command line, and prints the blocks' first and last lines itself,
    so its output is the dump's table section verbatim.
    """
    import subprocess
    import tempfile

    from .psql import child_env
    from .secrets import redact

    script = ["\\set ON_ERROR_STOP on",
              "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;",
              f"SET TRANSACTION SNAPSHOT '{snapshot}';",
              *(f"{setting};" for setting in SESSION_SETTINGS)]
    for _, spec in tables:
        header = f"COPY {spec} FROM stdin;".replace("\\", "\\\\").replace("'", "''")
        script += ["\\echo", f"\\echo '{header}'", f"COPY {spec} TO STDOUT;", "\\echo '\\\\.'"]
    script.append("COMMIT;")
    env = {**child_env(target), "PGCLIENTENCODING": "UTF8", "PGAPPNAME": "movelib dump"}
    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen([str(psql), "--no-psqlrc", "--quiet", "--file=-"], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=errors) as proc:
            try:
                assert proc.stdin is not None and proc.stdout is not None
                try:
                    proc.stdin.write("\n".join(script).encode() + b"\n")
                    proc.stdin.close()
                except BrokenPipeError:  # psql stopped before reading (cannot connect...)
                    pass
                while block := proc.stdout.read(1 << 20):
                    out.write(block)
                code = proc.wait()
            except BaseException:
                proc.kill()
                raise
        if code:
            errors.seek(0)
            said = redact(errors.read().decode("utf-8", "replace").strip())[-2000:]
            raise ArtifactError(f"psql could not read the tables (exit {code}): {said}")
