"""Where a database's movement library came from, recorded by the database itself.

Every seed that writes something and every restore adds one row to ``movement_provenance``
(migration 0003), inside the transaction that changes the library: a seed names its data file
and sha256 and its ``movement_seed_run``; a restore names the artifact's sha256, its release and
tag, the source's environment and server version, and what the source was seeded from. Both
record who ran them (``user@host``) and when. The table belongs to the database, like its
environment label: a dump does not carry it and a restore does not drop it, so the history
survives restores; ``inv verify`` and ``inv db.status`` print the latest row.

The library's digest lives with the schema's other facts (:func:`movelib.database.tables.library_sha256`);
what ``inv db.status`` says of each emulator is :mod:`movelib.database.dbstatus`; a release's manifest
found and compared with a database is :mod:`movelib.ship.release_check`; the row a restore adds is
written by :mod:`movelib.ship.restore_record`.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from ..base.text import shown
from .tables import PROVENANCE_TABLE, table_exists

NO_SCHEMA = "no movelib schema"
NOTHING = "nothing recorded"

_COLUMNS = ("id", "kind", "data_file", "data_sha256", "artifact_file", "artifact_sha256",
            "release", "tag", "source_environment", "source_server_version", "run_by",
            "recorded_at", "seed_run_id", "signed_by", "signer_key", "manifest_sha256")
# NULL when read from a database before the migration that added them (0004, 0008)
_LATER = ("signed_by", "signer_key", "manifest_sha256")


@dataclass(frozen=True)
class Provenance:
    """One row of ``movement_provenance``."""

    id: int
    kind: str  # seed | restore
    data_file: str | None
    data_sha256: str | None
    artifact_file: str | None
    artifact_sha256: str | None
    release: str | None
    tag: str | None
    source_environment: str | None
    source_server_version: str | None
    run_by: str
    recorded_at: datetime
    seed_run_id: int | None
    signed_by: str | None = None  # the principal whose signature was verified at the restore
    signer_key: str | None = None  # its key's type and fingerprint
    manifest_sha256: str | None = None  # of the manifest bytes the signatures were verified over

    def describe(self) -> str:
        """``holds release v1.2 (...)`` or ``seeded from data/x.json (...)``, one line."""
        when = f"{self.recorded_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC by {shown(self.run_by)}"
        if self.kind == "seed":
            return (f"seeded from {shown(self.data_file)} (sha256 {_short(self.data_sha256)}; "
                    f"{when})")
        # a release only when its signature was verified at the restore; else what the file was
        what = (f"release {shown(self.release)}, signed by {shown(self.signed_by)} "
                f"({shown(self.signer_key)})" if self.release and self.signed_by
                else f"unsigned dump {shown(self.artifact_file)}")
        source = ", ".join(filter(None, (
            f"tag {shown(self.tag)}" if self.tag and self.signed_by else None,
            f"artifact {_short(self.artifact_sha256)}",
            f"from {shown(self.source_environment)}" if self.source_environment else None,
            f"PostgreSQL {shown(self.source_server_version)}" if self.source_server_version
            else None)))
        return f"holds {what} ({source}; restored {when})"

    def as_dict(self) -> dict[str, Any]:
        return {name: (value.isoformat() if isinstance(value, datetime) else value)
                for name, value in zip(_COLUMNS, (getattr(self, c) for c in _COLUMNS),
                                       strict=True)}


def _short(sha256: str | None) -> str:
    return f"{sha256[:12]}..." if sha256 else "unknown"


def run_by() -> str:
    """Who runs a seed or a restore: ``user@host`` of this process (recorded in the audit log
    and in ``movement_provenance``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def record_seed(conn: psycopg.Connection, *, data_file: str, data_sha256: str, run_by: str,
                seed_run_id: int) -> bool:
    """Record a seed that wrote something (in the caller's transaction). False when the
    database predates migration 0003 (``--skip-migrations``): nothing to record into."""
    if not table_exists(conn, PROVENANCE_TABLE):
        return False
    conn.execute(
        "INSERT INTO movement_provenance (kind, data_file, data_sha256, run_by, seed_run_id) "
        "VALUES ('seed', %s, %s, %s, %s)", (data_file, data_sha256, run_by, seed_run_id))
    return True


def latest(conn: psycopg.Connection) -> Provenance | str:
    """The latest record, or why there is none (:data:`NO_SCHEMA`, :data:`NOTHING`)."""
    if not table_exists(conn, PROVENANCE_TABLE):
        return NO_SCHEMA
    have = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND NOT attisdropped",
        (PROVENANCE_TABLE,))}
    columns = [c if c in have or c not in _LATER else f"NULL AS {c}" for c in _COLUMNS]
    row = conn.execute(f"SELECT {', '.join(columns)} FROM movement_provenance "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    return Provenance(*row) if row else NOTHING
