"""Where a database's movement library came from, recorded by the database itself.

Every seed that writes something and every restore adds one row to ``movement_provenance``
(migration 0003), inside the transaction that changes the library: a seed names its data file
and sha256 and its ``movement_seed_run``; a restore names the artifact's sha256, its release and
tag, the source's environment and server version, and what the source was seeded from. Both
record who ran them (``user@host``) and when. The table belongs to the database, like its
environment label: a dump does not carry it and a restore does not drop it, so the history
survives restores; ``inv verify`` and ``inv db.status`` print the latest row.

A release's manifest carries ``library_sha256``, a hash over every library version and its
state, so ``inv verify --release`` compares content, not only counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from .errors import ReleaseError
from .tables import PROVENANCE_TABLE, by_slug, environment_label, table_exists
from .text import shown

if TYPE_CHECKING:
    from .emulator import EmulatorStatus
    from .manifest import Manifest
    from .quorum import Signer
    from .settings import Settings

STATUS_CONNECT_TIMEOUT = 2  # db.status asks every running emulator: it must stay quick
NO_SCHEMA = "no movelib schema"
NOTHING = "nothing recorded"

# Every library version with its state (current, superseded, retired), one line each, in a
# fixed order: its sha256 says "the same library" in 64 characters, on any server.
LIBRARY_SHA256 = """
SELECT encode(sha256(convert_to(coalesce(string_agg(
           slug || E'\\t' || version || E'\\t' || content_hash || E'\\t' || state || E'\\n', ''
           ORDER BY BY_SLUG, version), ''), 'UTF8')), 'hex')
  FROM movement_library_versions
""".replace("BY_SLUG", by_slug())
# The same digest over each version's hash recomputed from its document (migration 0004's
# movement_library_content): what `inv verify --release` compares, never the stored hashes.
LIBRARY_CONTENT_SHA256 = LIBRARY_SHA256.replace("FROM movement_library_versions", """FROM (
    SELECT v.slug, v.version, v.state,
           coalesce(c.content_hash, 'not its approved document') AS content_hash
      FROM movement_library_versions v
      JOIN movement_library_content c ON c.slug = v.slug AND c.version = v.version) AS v""")
_COLUMNS = ("id", "kind", "data_file", "data_sha256", "artifact_file", "artifact_sha256",
            "release", "tag", "source_environment", "source_server_version", "run_by",
            "recorded_at", "seed_run_id", "signed_by", "signer_key")
_SINCE_0004 = ("signed_by", "signer_key")  # NULL when read from a database before it


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


def record_restore(conn: psycopg.Connection, manifest: Manifest, *, run_by: str,
                   signers: Sequence[Signer] = (), tag: str | None = None) -> None:
    """Record a restore of ``manifest``'s dump, after its rows are loaded (same transaction).

    Only what was proven is recorded: the release (and who signed it: every signer that
    counted, by principal and key) when its signatures were verified at this restore, the tag
    when ``tag`` was found pointing at that release (:func:`movelib.release.proven_tag`); an
    unsigned dump is recorded by its file alone. The earlier rows stay; those naming a seed run
    lose it, as the restore replaced the runs.
    """
    signed_by = ", ".join(s.principal for s in signers) or None
    signer_keys = ", ".join(f"{s.key.short_type} {s.key.fingerprint}" for s in signers) or None
    conn.execute("UPDATE movement_provenance SET seed_run_id = NULL WHERE seed_run_id IS NOT NULL")
    conn.execute(
        """
        INSERT INTO movement_provenance (kind, data_file, data_sha256, artifact_file,
            artifact_sha256, release, tag, source_environment, source_server_version, run_by,
            signed_by, signer_key)
        VALUES ('restore', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (manifest.data_file, manifest.data_sha256, manifest.dump_file, manifest.sha256,
         manifest.release if signers else None, tag if signers else None,
         manifest.environment, manifest.source_server_version, run_by, signed_by, signer_keys))


def latest(conn: psycopg.Connection) -> Provenance | str:
    """The latest record, or why there is none (:data:`NO_SCHEMA`, :data:`NOTHING`)."""
    if not table_exists(conn, PROVENANCE_TABLE):
        return NO_SCHEMA
    have = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND NOT attisdropped",
        (PROVENANCE_TABLE,))}
    columns = [c if c in have or c not in _SINCE_0004 else f"NULL AS {c}" for c in _COLUMNS]
    row = conn.execute(f"SELECT {', '.join(columns)} FROM movement_provenance "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    return Provenance(*row) if row else NOTHING


def library_sha256(conn: psycopg.Connection, *, recompute: bool = False) -> str:
    """The sha256 of every library version and its state (:data:`LIBRARY_SHA256`); with
    ``recompute``, of each version's hash recomputed from its document."""
    row = conn.execute(LIBRARY_CONTENT_SHA256 if recompute else LIBRARY_SHA256).fetchone()
    assert row is not None
    return str(row[0])


# -- inv db.status ----------------------------------------------------------------------------


def status_lines(settings: Settings, statuses: list[EmulatorStatus]) -> list[str]:
    """One line per running emulator: what its database holds (a quick connection each)."""
    lines = []
    for status in statuses:
        if status.running:
            lines.append(f"  {status.profile}: {_held_by(settings, status.profile)}")
    return ["provenance:", *lines] if lines else []


def _held_by(settings: Settings, profile: str) -> str:
    from .target import target_from_profile

    target = target_from_profile(settings.profile(profile))
    try:
        with psycopg.connect(target.conninfo, connect_timeout=STATUS_CONNECT_TIMEOUT,
                             autocommit=True, application_name="movelib status",
                             prepare_threshold=None) as conn:
            found = latest(conn)
            label = environment_label(conn)
    except psycopg.Error as exc:
        from .secrets import redact

        return f"cannot read it ({shown(redact(' '.join(str(exc).split())), 120)})"
    held = found if isinstance(found, str) else found.describe()
    return f"[{label}] {held}" if label else held  # a production label is seen at a glance


# -- inv verify --release ---------------------------------------------------------------------


def release_manifest(root: Path, version: str) -> tuple[str, Manifest]:
    """``--release``: the manifest of ``releases/<version>/`` under ``root``, or a manifest file
    named directly (``....manifest.json``, e.g. a CI artifact's); validated against its schema.
    The release's name (its version, else the file's name) and the manifest."""
    from .manifest import Manifest
    from .release import VERSION, release_manifest_path

    if version.endswith(".manifest.json"):
        path = Path(version)
        if not path.is_file():
            raise ReleaseError(f"{shown(version)}: no such manifest file")
        manifest = Manifest.from_json(path.read_text(encoding="utf-8"), str(path))
        return manifest.release or path.name, manifest
    if not VERSION.fullmatch(version):
        raise ReleaseError(f"{shown(version, 40)} is not a release version (e.g. v1.2) nor a "
                           "manifest file")
    path = release_manifest_path(root, version)
    return version, Manifest.from_json(path.read_text(encoding="utf-8"), str(path))


def compare_release(conn: psycopg.Connection, version: str,
                    manifest: Manifest) -> tuple[list[str], list[str]]:
    """(what matches, what differs) between the database and a release's manifest: the row
    count of every movement table the release holds, and the library's content."""
    from .tables import current_counts

    tables = [t for t in manifest.row_counts if t.startswith("movement_")]
    counts = current_counts(conn, tables)
    differs = [f"release {version}: {t} has {'no table' if counts[t] is None else counts[t]} "
               f"rows, the release {manifest.row_counts[t]}"
               for t in tables if counts[t] != manifest.row_counts[t]]
    same = [f"release {version}: row counts match ({len(tables)} movement tables)"] if not differs else []
    if manifest.library_sha256 is None:
        same.append(f"release {version}: content not compared (its manifest, written by movelib "
                    f"{manifest.tool_version}, has no library_sha256)")
        return same, differs
    record = latest(conn)
    if (isinstance(record, Provenance) and record.kind == "restore" and record.signed_by
            and record.artifact_sha256 == manifest.sha256):
        same.append(f"release {version}, signed by {shown(record.signed_by)} "
                    f"({shown(record.signer_key)}): this database restored it, its signature "
                    "verified then")
    else:
        same.append(f"release {version}: not restored here from a verified signature of it "
                    f"(the database {record.describe() if isinstance(record, Provenance) else record})")
    have = library_sha256(conn, recompute=True)
    if have == manifest.library_sha256:
        same.append(f"release {version}: library content matches (sha256 {have[:12]}...)")
    else:
        differs.append(f"release {version}: the library's content differs from the release's "
                       f"(library_sha256 {have[:12]}... vs {manifest.library_sha256[:12]}...; "
                       "`inv diff` names the movements)")
    return same, differs
