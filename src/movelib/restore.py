"""``inv restore``: apply a checked seed dump in one transaction, verified before it commits.

The dump's size and sha256 are checked against its manifest before any connection. The SQL and
its COPY blocks then run through one psycopg transaction; the row counts are compared with the
manifest and the audit chains verified inside that same transaction, so any failure (a bad
statement, a count mismatch, a lost connection) leaves the target exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psycopg

from . import db, secrets
from .errors import ArtifactError, RestoreFailed
from .guard import Permission, check_protected, environment_label
from .manifest import Manifest, check_artifact
from .target import Target
from .verify import VerifyReport, check

Echo = Callable[[str], None]
COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class RestorePlan:
    target: Target
    dump_file: Path
    manifest: Manifest
    current_counts: dict[str, int | None]


@dataclass(frozen=True)
class RestoreResult:
    counts: dict[str, int]
    verification: VerifyReport


def current_counts(conn: psycopg.Connection, tables: list[str]) -> dict[str, int | None]:
    counts: dict[str, int | None] = {}
    for table in tables:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if exists and exists[0]:
            row = conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))
            ).fetchone()
            counts[table] = int(row[0]) if row else 0
        else:
            counts[table] = None
    return counts


def _apply(conn: psycopg.Connection, path: Path) -> None:
    """Run the dump's statements and COPY blocks on ``conn`` (inside the caller's transaction).

    COPY data is passed on in blocks of a megabyte, found by searching for the end-of-data
    marker, rather than line by line.
    """
    pending: list[bytes] = []

    def flush() -> None:
        text = b"".join(pending).strip()
        pending.clear()
        if text:
            conn.execute(text)

    with path.open("rb") as handle:
        while line := handle.readline():
            stripped = line.strip()
            if not (stripped.startswith(b"COPY ") and stripped.endswith(b"FROM stdin;")):
                pending.append(line)
                continue
            flush()
            with conn.cursor().copy(stripped[:-1].decode("utf-8")) as copy:
                if not _copy_block(handle, copy.write):
                    raise ArtifactError(f"{path}: a COPY block is not terminated (truncated dump?)")
    flush()


END_OF_DATA = b"\\.\n"


def _copy_block(handle: BinaryIO, write: Callable[[bytes], None]) -> bool:
    """Pass COPY data from ``handle`` to ``write`` up to the ``\\.`` line; leave ``handle`` just
    after it. False if the file ends first."""
    carry = b""
    while True:
        block = handle.read(COPY_CHUNK)
        data = carry + block
        if data.startswith(END_OF_DATA):
            handle.seek(-(len(data) - len(END_OF_DATA)), 1)
            return True
        end = data.find(b"\n" + END_OF_DATA)
        if end >= 0:
            write(data[: end + 1])
            handle.seek(-(len(data) - end - 1 - len(END_OF_DATA)), 1)
            return True
        if not block:
            return False
        cut = data.rfind(b"\n") + 1  # keep a partial last line (it may hold the marker's start)
        write(data[:cut])
        carry = data[cut:]


def plan_restore(target: Target, dump_file: Path) -> RestorePlan:
    """Check the artifact (no connection), then read the target's current counts."""
    manifest = check_artifact(dump_file)
    with db.connect(target, task="restore", autocommit=True) as conn:
        counts = current_counts(conn, list(manifest.row_counts))
    return RestorePlan(target, dump_file, manifest, counts)


def restore(plan: RestorePlan, *, lock_timeout: float = 30.0,
            permission: Permission | None = None) -> RestoreResult:
    """Apply ``plan`` all-or-nothing. The dump is checked again right before it is applied."""
    target, manifest = plan.target, plan.manifest
    again = check_artifact(plan.dump_file)
    if again != manifest:
        raise ArtifactError(f"{plan.dump_file} changed since it was checked; refusing it")
    with db.connect(target, task="restore", autocommit=True) as conn, db.advisory_lock(
        conn, target, task="restore", timeout=lock_timeout
    ):
        check_protected(conn, target, permission or Permission(), "restore")
        label = environment_label(conn)
        try:
            with conn.transaction():
                _apply(conn, plan.dump_file)
                if label is not None:  # the label belongs to the database, not to the dump
                    conn.execute("INSERT INTO movement_environment (singleton, label) "
                                 "VALUES (true, %s)", (label,))
                counts = {k: v for k, v in current_counts(conn, list(manifest.row_counts)).items()
                          if v is not None}
                mismatched = {k: (counts.get(k), v) for k, v in manifest.row_counts.items()
                              if counts.get(k) != v}
                if mismatched:
                    detail = ", ".join(f"{k} {got} (manifest {want})"
                                       for k, (got, want) in mismatched.items())
                    raise RestoreFailed(
                        f"restore into {target.describe()} rolled back: the restored row counts "
                        f"differ from the manifest: {detail}"
                    )
                report = check(conn, target)
                if not report.ok:
                    raise RestoreFailed(
                        f"restore into {target.describe()} rolled back: the restored library "
                        "fails verification:\n  " + "\n  ".join(report.problems)
                    )
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
                db.raise_sql_error(target, exc, "the restore")
            raise RestoreFailed(
                f"restore into {target.describe()} failed and was rolled back; the target is "
                f"unchanged:\n  {secrets.redact(str(exc).strip())}"
            ) from None
    return RestoreResult(counts, report)
