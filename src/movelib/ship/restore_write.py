"""What a restore writes, in the caller's locked transaction, once every check of the plan was
made: the dump merged into the tables that exist (:mod:`movelib.ship.merge`) or loaded into a
database without them; then the counts (and a merge's library digest) compared with the
manifest, the library verified, and the restore recorded. Any failure raises, and the caller's
transaction rolls back: the target is as it was."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from ..base.errors import RestoreFailed
from ..database import db
from ..database.db import rows
from ..database.dependents import Reference, references
from ..database.migrations import checkout_migrations, migration_ids
from ..database.provenance import Provenance, latest, run_by
from ..database.tables import current_counts, library_sha256
from ..database.target import Target
from ..database.yoyo_tables import record_applied
from ..seed.audit_chains import audit_trails
from ..seed.verify import VerifyReport, check
from ..source.datafile import Progress
from .dumpformat import transaction_scoped
from .dumpreader import WRITING, CheckedDump, RowsRead, Sql, read_dump
from .manifest import Manifest
from .merge import apply_merge
from .merge_check import MOST_TOUCHED, before, half, touched, whole
from .merge_plan import Changes
from .restore_record import Signer, record_restore

# What a merge must leave equal to the manifest's counts: the library and its pointers. Drafts,
# audit rows and seed runs are the target's own history plus what the merge added.
MERGE_COUNTED = ("movement_library", "movement_current")


def refuse_references(target: Target, found: list[Reference]) -> None:
    if found:
        raise RestoreFailed(
            f"refusing to restore into {target.describe()}: the dump does not hold movement "
            "versions (or holds them with other content) that rows of other tables reference; "
            "removing them would break those rows. Nothing was written.\n  "
            + "\n  ".join(r.line() for r in found)
            + "\n  point those rows at a movement the release holds, or restore a release that "
              "still holds these versions")


@dataclass(frozen=True)
class RestoreResult:
    counts: dict[str, int]
    verification: VerifyReport
    provenance: Provenance | None = None  # what the restore recorded
    migrated: tuple[str, ...] = ()  # this checkout's migrations the dump predates, applied after it
    merged: Changes | None = None  # a merge: what it wrote

    def lines(self) -> list[str]:
        lines = [f"migrations: applied {', '.join(self.migrated)} after the dump's (it predates "
                 "them), in the same transaction"] if self.migrated else []
        if self.merged is not None:
            lines.append(f"merged: {self.merged.summary()}")
        if self.provenance:
            lines.append(f"provenance: recorded; the database {self.provenance.describe()}")
        counts = self.verification.counts
        return [*lines, f"restore: done; row counts match the manifest; verify: ok "
                        f"(library {counts['library']}, audit {counts['audit_log']})"]

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "migrated": list(self.migrated),
                "merged": self.merged.as_dict() if self.merged else None,
                "provenance": self.provenance.as_dict() if self.provenance else None,
                "verification": self.verification.as_dict()}


def _apply(conn: psycopg.Connection, dump: CheckedDump, target: Target,
           lock_timeout: float, progress: Progress | None = None) -> None:
    """Load ``dump`` into a database without the movement tables, on ``conn`` (inside the
    caller's transaction): movelib's own SQL (its schema changes in short lock tries), and the
    rows of each known table through COPY, checked again line by line as they stream (said to
    ``progress``)."""
    cursor = conn.cursor()
    read = RowsRead(progress, WRITING, dump.manifest.size)
    for part in read_dump(dump.path, dump.layout, dump.manifest):
        if isinstance(part, Sql):
            text = transaction_scoped(part.text)
            db.with_lock_tries(conn, lock_timeout, partial(conn.execute, text),
                               doing="the restore's schema", target=target)
            continue
        with cursor.copy(f"COPY {part.table.spec} FROM STDIN") as copy:
            for block in read.counted(part.blocks):
                copy.write(block)
    read.finish()


def migrate_after(conn: psycopg.Connection, dump: CheckedDump,
                   migrations_dir: Path) -> tuple[str, ...]:
    """Apply (in the caller's transaction) this checkout's migrations that a dump predates,
    recorded as yoyo records them: the restored database is at this checkout's schema, and a
    dump from before migration 0003 still gets its provenance recorded."""
    have = list(dump.layout.migrations)
    later = [m for m in migration_ids(migrations_dir) if m not in have]
    for migration_id, text in checkout_migrations(migrations_dir, have + later)[len(have):]:
        conn.execute(text)
        record_applied(conn, migration_id, "applied by inv restore after an older dump")
    return tuple(later)


def write(conn: psycopg.Connection, target: Target, dump: CheckedDump, label: str | None,
          merged: Changes | None, signers: Sequence[Signer], *, lock_timeout: float,
          migrations_dir: Path, tag: str | None, progress: Progress | None = None) -> RestoreResult:
    """Write ``dump`` into ``target`` on ``conn`` (the caller's locked transaction, every check
    made; ``label`` is the target's, kept by a load): merged
    into the tables that exist (``merged``, decided in this transaction), else loaded into an
    empty database; the counts (and a merge's digest) compared with the manifest, the library
    verified, the restore recorded."""
    manifest = dump.manifest
    actor = run_by()
    if merged is not None:
        counts, report = _merged(conn, target, dump, merged, progress)
        record_restore(conn, manifest, run_by=actor, signers=signers, tag=tag,
                       merged=merged.as_dict(), manifest_sha256=dump.manifest_sha256)
        recorded = latest(conn)
        return RestoreResult(counts, report,
                             recorded if isinstance(recorded, Provenance) else None, (), merged)
    # a load into a database without the movement tables
    _apply(conn, dump, target, lock_timeout, progress)
    if label is not None:  # the label belongs to the database, not to the dump
        conn.execute("INSERT INTO movement_environment (singleton, label) VALUES (true, %s)",
                     (label,))
    counted = tuple(manifest.row_counts)
    counts = {k: v for k, v in current_counts(conn, list(counted)).items() if v is not None}
    _compare_counts(target, manifest, counts, counted)
    migrated = migrate_after(conn, dump, migrations_dir)  # what the dump predates
    # content=False: the database checked every loaded row against its document (0004's
    # triggers as the rows streamed, or 0004's one-time check just now)
    report = check(conn, target, content=False)
    if not report.ok:
        raise RestoreFailed(
            f"restore into {target.describe()} rolled back: the restored library fails "
            "verification:\n  " + "\n  ".join(report.problems))
    record_restore(conn, manifest, run_by=actor, signers=signers, tag=tag,  # after the rows
                   manifest_sha256=dump.manifest_sha256)
    recorded = latest(conn)
    return RestoreResult(counts, report, recorded if isinstance(recorded, Provenance) else None,
                         migrated)


class _Heal(Exception):
    """Versions the merge kept whose audit chains are broken in the target: made again."""

    def __init__(self, keys: set[tuple[str, int]]) -> None:
        super().__init__(f"{len(keys)} version(s) to replace")
        self.keys = keys


def _merged(conn: psycopg.Connection, target: Target, dump: CheckedDump, merged: Changes,
            progress: Progress | None = None) -> tuple[dict[str, int], VerifyReport]:
    """Merge ``dump`` on ``conn`` and check the result: the library's counts and digest
    equal to the manifest's, the library verified. A version the merge kept as the target has
    it, whose audit chain in the target is broken (rows deleted or reordered behind the
    triggers' back), is replaced by the release's, as the full restore replaced everything:
    the merge is undone (a savepoint) and made again with those versions, once."""
    manifest = dump.manifest
    for attempt in (1, 2):
        refuse_references(target, references(conn, merged.removed, merged.cleared))
        try:
            slugs = touched(merged)
            # the library checked while the merge reads the dump (before it writes), the slugs
            # it writes after the writes; the whole check when either finds anything
            first = (partial(before, conn, slugs, merged.invariants)
                     if len(slugs) <= MOST_TOUCHED else None)
            with conn.transaction():  # a savepoint: a merge made again is undone first
                checked = apply_merge(conn, dump, merged, progress, beside=first)
                counts = {k: v for k, v in current_counts(conn, list(MERGE_COUNTED)).items()
                          if v is not None}
                _compare_counts(target, manifest, counts, MERGE_COUNTED)
                if manifest.library_sha256 is not None \
                        and library_sha256(conn) != manifest.library_sha256:
                    raise RestoreFailed(
                        f"restore into {target.describe()} rolled back: the merged library's "
                        "digest differs from the manifest's library_sha256 (versions, content "
                        "hashes or current pointers differ from the dump's)")
                report = (whole(conn, target, checked, half(conn, slugs))
                          if checked and checked[0].clean else None) or check(conn, target,
                                                                              content=False)
                if not report.ok:
                    broken = {(s, v) for s, v in audit_trails(conn).broken} - merged.added
                    if broken and attempt == 1:
                        raise _Heal(broken)
                    raise RestoreFailed(
                        f"restore into {target.describe()} rolled back: the restored library "
                        "fails verification:\n  " + "\n  ".join(report.problems))
                return counts, report
        except _Heal as heal:
            _replace(conn, merged, heal.keys)
    raise AssertionError("unreachable: the second attempt returns or raises")


def _replace(conn: psycopg.Connection, merged: Changes, keys: set[tuple[str, int]]) -> None:
    """Have ``merged`` replace the target's ``keys`` (versions it kept) with the dump's: removed,
    added, and their slugs' pointers removed and set again where they point at one."""
    merged.removed += sorted(keys)
    merged.added |= keys
    merged.kept -= len(keys)
    merged.added_count += len(keys)
    pointing = rows(conn, "SELECT c.slug, c.version FROM movement_current c "
                          "JOIN unnest(%s::text[], %s::int[]) AS k (slug, version) "
                          "ON k.slug = c.slug AND k.version = c.version",
                    [k[0] for k in keys], [k[1] for k in keys])
    for slug, version in pointing:
        if slug not in merged.cleared:
            merged.cleared.append(slug)
        merged.pointed[slug] = merged.moved.pop(slug, version)


def _compare_counts(target: Target, manifest: Manifest, counts: dict[str, int],
                    tables: tuple[str, ...]) -> None:
    mismatched = {k: (counts.get(k), manifest.row_counts[k]) for k in tables
                  if k in manifest.row_counts and counts.get(k) != manifest.row_counts[k]}
    if mismatched:
        detail = ", ".join(f"{k} {got} (manifest {want})" for k, (got, want) in mismatched.items())
        raise RestoreFailed(
            f"restore into {target.describe()} rolled back: the restored row counts "
            f"differ from the manifest: {detail}"
        )
