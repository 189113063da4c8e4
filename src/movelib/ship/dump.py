"""``inv dump``: a portable, checksummed SQL artifact of the movement library.

The dump is plain SQL that both ``inv restore`` and ``psql -1 -v ON_ERROR_STOP=1 -f`` can apply:
DROP + CREATE of the movement tables with their functions and triggers (the DDL of the
migrations the source has applied), yoyo's bookkeeping (so ``inv migrate`` is a no-op after a
restore), then every row as ``COPY ... FROM stdin`` blocks. All of it but the rows is rendered
by ``dumpformat`` from this checkout's migrations, as ``inv restore`` renders it again to check
the file; a source whose columns differ from the known ones is refused. Everything is read from one
REPEATABLE READ snapshot: the rows by psql importing that snapshot (or by psycopg's COPY), so it
needs no pg_dump and carries none of its version-specific lines (``\\restrict``,
``SET transaction_timeout``) that older servers reject.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from .. import __version__
from ..base.errors import ArtifactError, InvalidTarget
from ..base.files import (
    BackgroundWriter,
    HashingWriter,
    atomic_file,
    link_atomically,
    staged,
    write_atomically,
)
from ..base.text import shown_path
from ..database import db
from ..database.migrations import checkout_migrations, migration_ids
from ..database.psql import has_tls
from ..database.tables import (
    environment_label,
    library_sha256,
    require_schema,
    row_count,
    rows_per_version,
    server_version,
)
from ..database.target import Target
from ..database.yoyo_tables import applied_ids
from .copytext import END_OF_DATA
from .dumpformat import Layout, Table, render
from .manifest import DUMP_PREFIX, Manifest, manifest_path

Echo = Callable[[str], None]

LATEST = f"{DUMP_PREFIX}latest"


@dataclass(frozen=True)
class DumpResult:
    path: Path
    manifest_path: Path
    manifest: Manifest
    latest: Path | None

    def lines(self) -> list[str]:
        counts = ", ".join(f"{k} {v}" for k, v in self.manifest.row_counts.items()
                           if k.startswith("movement_"))
        shipped = self.manifest.compressed
        size = (f"{shipped['size']} bytes gzip of {self.manifest.size} bytes of SQL" if shipped
                else f"{self.manifest.size} bytes")
        lines = [f"dump: {shown_path(self.path)} ({size}, sha256 "
                 f"{shipped['sha256'] if shipped else self.manifest.sha256})",
                 f"  manifest: {self.manifest_path.name}; rows: {counts}"]
        if self.latest:
            lines.append(f"  latest: {shown_path(self.latest)}")
        return lines


def _applied_migrations(conn: psycopg.Connection, migrations_dir: Path) -> list[str]:
    known = migration_ids(migrations_dir)
    applied = applied_ids(conn)
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
    return applied


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", (table,))]


def _check_columns(conn: psycopg.Connection, layout: Layout) -> None:
    """The source's tables must have exactly the columns its migrations give them: those are
    the only ones a restore accepts."""
    for table in layout.tables:
        found = tuple(_columns(conn, table.name))
        if found != table.columns:
            raise ArtifactError(
                f"{table.name} of the source has columns ({', '.join(found)}) where its "
                f"migrations give ({', '.join(table.columns)}): it was altered outside the "
                "migrations (or dumpformat.MIGRATION_COLUMNS lacks a migration); not dumping it"
            )


def _scalar(conn: psycopg.Connection, query: str) -> object:
    row = conn.execute(query).fetchone()
    return row[0] if row else None


def dump_name(now: datetime) -> str:
    return f"{DUMP_PREFIX}{now:%Y%m%d_%H%M%S}.sql"


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
    created_at = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    path = output_dir / dump_name(now)
    for second in range(2, 100):  # a second dump in the same second: _2, _3...
        if not path.exists() and not manifest_path(path).exists():
            break
        path = output_dir / dump_name(now).replace(".sql", f"_{second}.sql")
    else:
        raise ArtifactError(f"{shown_path(path)} already exists; wait a second and dump again")
    with db.connect(target, task="dump", autocommit=True) as conn:
        if psql is not None and conn.info.pgconn.ssl_in_use and not has_tls(psql):
            if reader == "psql":
                raise ArtifactError(
                    f"--reader psql: {psql} was built without TLS, and {target.describe()} is "
                    "reached over TLS; use --reader auto (psycopg reads the rows) or a psql "
                    "with TLS (emulator.bin_dir)")
            psql = None  # it cannot reach the target as psycopg did: psycopg reads the rows
        try:
            with db.work(conn, read_only=True):  # one snapshot for every table and count
                manifest = _dump_in_snapshot(conn, target, migrations_dir, path, psql,
                                             created_at, release)
        except psycopg.Error as exc:
            path.unlink(missing_ok=True)
            db.raise_sql_error(target, exc, "the dump")
            raise
    mpath = manifest_path(path)
    latest = output_dir / f"{LATEST}.sql" if update_latest else None
    try:
        write_atomically(mpath, manifest.to_json().encode())  # the manifest last
        if latest is not None:  # both files staged first, then renamed: a pair, or the old pair
            with staged(manifest_path(latest), manifest.to_json().encode()) as commit_manifest:
                link_atomically(path, latest)  # the same bytes under a second name
                commit_manifest()
    except BaseException:
        path.unlink(missing_ok=True)  # a dump without its manifest is no artifact
        mpath.unlink(missing_ok=True)
        raise
    return DumpResult(path, mpath, manifest, latest)


def _dump_in_snapshot(conn: psycopg.Connection, target: Target, migrations_dir: Path,
                      path: Path, psql: Path | None, created_at: str,
                      release: str | None) -> Manifest:
    """Write ``path`` from the caller's read-only snapshot; the manifest that describes it."""
    require_schema(conn, target)
    layout = render(checkout_migrations(migrations_dir, _applied_migrations(
        conn, migrations_dir)), created_at, __version__)
    _check_columns(conn, layout)
    with atomic_file(path) as handle:
        out = HashingWriter(handle)
        writer = BackgroundWriter(out)
        try:
            facts = _write(conn, writer, layout, target, psql)
        finally:
            writer.close()
    info = conn.execute(
        "SELECT data_file, data_sha256 FROM movement_seed_run ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return Manifest(
        dump_file=path.name,
        size=out.size,
        sha256=out.digest.hexdigest(),
        row_counts=facts.counts,
        migrations=list(layout.migrations),
        data_file=info[0] if info else None,
        data_sha256=info[1] if info else None,
        source_server_version=server_version(conn),
        environment=environment_label(conn),
        created_at=created_at,
        tool_version=__version__,
        release=release,
        movement_versions=facts.versions,
        library_sha256=facts.library_sha256,
    )


@dataclass(frozen=True)
class _Snapshot:
    """What the manifest says of the snapshot's rows, read on the dump's own connection."""

    counts: dict[str, int]  # each table's rows
    versions: dict[str, int]  # the library's rows per version
    library_sha256: str

    @classmethod
    def read(cls, conn: psycopg.Connection, layout: Layout,
             counts: dict[str, int] | None = None) -> _Snapshot:
        """``counts`` when the rows were counted as they were read (psycopg's COPY)."""
        if counts is None:
            counts = {t.name: row_count(conn, t.name) for t in layout.tables}
        return cls(counts, {str(v): n for v, n in rows_per_version(conn).items()},
                   library_sha256(conn))


def _write(
    conn: psycopg.Connection,
    out: BackgroundWriter,
    layout: Layout,
    target: Target,
    psql: Path | None,
) -> _Snapshot:
    """The dump: movelib's rendering, its holes filled with each table's rows."""
    out.write(layout.head)
    conn.execute("; ".join(SESSION_SETTINGS))
    if psql is not None:
        from concurrent.futures import ThreadPoolExecutor

        # psql exports nothing back; the counts, the versions and the library's digest come
        # from this transaction's snapshot (the one psql imports), read on this connection
        # while psql streams the rows (on a second server process: the digest's 0.2 s of a
        # 100k dump costs no time)
        snapshot = str(_scalar(conn, "SELECT pg_export_snapshot()"))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="movelib-count") as pool:
            reading = pool.submit(_Snapshot.read, conn, layout)
            _copy_with_psql(target, psql, snapshot, db.limits_off(conn), layout.tables, out)
            facts = reading.result()
    else:
        counts = {t.name: _copy_with_psycopg(conn, t, out) for t in layout.tables}
        facts = _Snapshot.read(conn, layout, counts)
    out.write(layout.tail)
    return facts


# How every row is written, whatever the server's defaults (pg_dump sets the same), for the
# reading transaction only.
SESSION_SETTINGS = ("SET LOCAL datestyle = ISO", "SET LOCAL intervalstyle = postgres",
                    "SET LOCAL extra_float_digits = 3", "SET LOCAL TIME ZONE 'UTC'")


def _copy_with_psycopg(conn: psycopg.Connection, table: Table, out: BackgroundWriter) -> int:
    """One table's COPY block, read through psycopg (one Python call per row)."""
    out.write(table.opening)
    cur = conn.cursor()
    # Table order, like pg_dump: ids are kept, so row order carries no meaning.
    with cur.copy(f"COPY {table.spec} TO STDOUT") as copy:
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
    out.write(END_OF_DATA)
    return cur.rowcount


def _psql_for(reader: str, bin_dir: str | None) -> Path | None:
    if reader not in ("auto", "psql", "psycopg"):
        raise ArtifactError(f"unknown dump reader {reader!r}; expected auto, psql or psycopg")
    if reader == "psycopg" or (reader == "auto" and sys.platform == "win32"):
        return None
    from ..base.errors import ConfigError
    from ..database.psql import tool_path

    try:
        return tool_path("psql", bin_dir)
    except ConfigError:
        if reader == "psql":
            raise
        return None


def _copy_with_psql(target: Target, psql: Path, snapshot: str, limits_off: str,
                    tables: tuple[Table, ...], out: BackgroundWriter) -> None:
    """Every table's COPY block, read by psql inside this connection's snapshot.

    psql imports ``snapshot``, exported by the dump's REPEATABLE READ transaction, so it sees
    exactly what the rest of the dump (and its row counts) sees. It gets the password through its
    environment, never its command line, and prints the blocks' first and last lines itself,
    so its output is the dump's table section verbatim.
    """
    import subprocess
    import tempfile

    from ..base.secrets import redact
    from ..database.psql import child_env

    script = ["\\set ON_ERROR_STOP on",
              "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;",
              f"SET TRANSACTION SNAPSHOT '{snapshot}';",
              # the role's limits off for this transaction, as for movelib's own (db.work)
              f"SELECT {limits_off} \\g {os.devnull}",
              *(f"{setting};" for setting in SESSION_SETTINGS)]
    for table in tables:  # each block's table.opening, rows and END_OF_DATA
        header = table.header.replace("\\", "\\\\").replace("'", "''")
        script += ["\\echo", f"\\echo '{header}'", f"COPY {table.spec} TO STDOUT;",
                   "\\echo '\\\\.'"]
    script.append("COMMIT;")
    env = {**child_env(target), "PGAPPNAME": "movelib dump"}  # child_env sets the encoding
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
