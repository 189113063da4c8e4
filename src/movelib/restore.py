"""``inv restore``: a checked seed dump, loaded as data in one transaction, verified before it
commits.

Nothing of the dump file runs as SQL. Before any connection the manifest is validated against
its JSON Schema, the dump's size and sha256 are compared with it, and every line of the file is
walked against what movelib itself writes for the manifest's migrations (``dumpreader``): the
schema part must be movelib's rendering byte for byte, the rest COPY rows of known tables with
known columns. The restore then runs movelib's own rendering and streams the checked rows, in
one psycopg transaction; the row counts are compared with the manifest and the audit chains
verified inside that same transaction, so any failure (a changed file, a bad row, a count
mismatch, a lost connection) leaves the target exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from . import db, secrets
from .defaults import LOCK_TIMEOUT
from .dumpformat import CHECKOUT_MIGRATIONS, Layout, checkout_migrations, transaction_scoped
from .dumpreader import Sql, check_dump, layout_for, read_dump
from .errors import RestoreFailed
from .guard import Permission, check_protected
from .manifest import Manifest, check_size_and_sha256, manifest_path, read_manifest
from .migrations import migration_ids, record_applied
from .provenance import Provenance, latest, record_restore
from .publish import run_by
from .release import proven_tag
from .settings import Settings
from .signing import (
    Verified,
    check_signature,
    read_signature_file,
    require_signed_for,
    signature_path,
)
from .tables import current_counts, environment_label
from .target import Target
from .verify import VerifyReport, check

Echo = Callable[[str], None]
Ask = Callable[[str], None]  # returns when the person confirms; raises ConfirmationRequired


@dataclass(frozen=True)
class RestoreOptions:
    dump_file: Path
    assume_yes: bool = False  # --yes: do not ask
    lock_timeout: float = LOCK_TIMEOUT
    permission: Permission = field(default_factory=Permission)  # for a production target
    require_signature: bool = False  # --require-signature (a production target always does)


@dataclass(frozen=True)
class CheckedDump:
    """A dump file whose manifest, sha256 and every line were checked, and what it loads.

    ``manifest_bytes`` are the manifest as read, once: ``manifest`` is parsed from them and a
    signature is checked over them. The load reads the dump again and compares its sha256 with
    ``manifest`` in the same pass, before the commit."""

    path: Path
    manifest: Manifest
    layout: Layout
    manifest_bytes: bytes = b""


@dataclass(frozen=True)
class RestorePlan:
    target: Target
    dump: CheckedDump
    current_counts: dict[str, int | None]

    @property
    def dump_file(self) -> Path:
        return self.dump.path

    @property
    def manifest(self) -> Manifest:
        return self.dump.manifest


@dataclass(frozen=True)
class RestoreResult:
    counts: dict[str, int]
    verification: VerifyReport
    provenance: Provenance | None = None  # what the restore recorded
    migrated: tuple[str, ...] = ()  # this checkout's migrations the dump predates, applied after it


def _checkpoint(step: str) -> None:
    """Called between the reads of a restore's artifacts (``manifest read``, ``dump checked``,
    ``signature read``, ``target planned``): nothing by default. A test swaps files here to
    prove that what was checked is what is trusted and loaded."""


def check_dump_file(dump_file: Path, migrations_dir: Path = CHECKOUT_MIGRATIONS) -> CheckedDump:
    """Everything that is checked without a connection: the manifest (read once; its schema,
    migrations this checkout has), the size and sha256, and every line of the file."""
    raw, manifest = read_manifest(dump_file)
    _checkpoint("manifest read")
    check_size_and_sha256(dump_file, manifest)
    layout = layout_for(manifest, migrations_dir, str(manifest_path(dump_file)))
    check_dump(dump_file, layout, manifest)
    _checkpoint("dump checked")
    return CheckedDump(dump_file, manifest, layout, raw)


def _apply(conn: psycopg.Connection, dump: CheckedDump) -> None:
    """Load ``dump`` on ``conn`` (inside the caller's transaction): movelib's own SQL, and the
    rows of each known table through COPY, checked again line by line as they stream."""
    cursor = conn.cursor()
    for part in read_dump(dump.path, dump.layout, dump.manifest):
        if isinstance(part, Sql):
            conn.execute(transaction_scoped(part.text))
            continue
        with cursor.copy(f"COPY {part.table.spec} FROM STDIN") as copy:
            for block in part.blocks:
                copy.write(block)


def plan_restore(target: Target, dump_file: Path, *,
                 migrations_dir: Path = CHECKOUT_MIGRATIONS) -> RestorePlan:
    """Check the dump (no connection), then read the target's current counts."""
    return _plan(target, check_dump_file(dump_file, migrations_dir))


def _plan(target: Target, dump: CheckedDump) -> RestorePlan:
    with db.connect(target, task="restore", autocommit=True) as conn:
        counts = current_counts(conn, list(dump.manifest.row_counts))
    return RestorePlan(target, dump, counts)


def _migrate_after(conn: psycopg.Connection, dump: CheckedDump,
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


def restore(plan: RestorePlan, *, lock_timeout: float = LOCK_TIMEOUT,
            permission: Permission | None = None, signer: Verified | None = None,
            migrations_dir: Path = CHECKOUT_MIGRATIONS, tag: str | None = None) -> RestoreResult:
    """Apply ``plan`` all-or-nothing. Its lines are checked again as they load, and the file's
    sha256 before the commit, so a dump changed since its check is never committed."""
    target, manifest = plan.target, plan.manifest
    with db.connect(target, task="restore", autocommit=True) as conn:
        try:
            with db.locked(conn, target, task="restore", timeout=lock_timeout):
                check_protected(conn, target, permission or Permission(), "restore")
                label = environment_label(conn)
                require_signed_for(label, signer, manifest_path(plan.dump_file),
                                   target.describe())
                _apply(conn, plan.dump)
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
                actor = run_by()
                migrated = _migrate_after(conn, plan.dump, migrations_dir)
                # content=False: the database checked every loaded row against its document
                # (0004's triggers as the rows streamed, or 0004's one-time check just now)
                report = check(conn, target, content=False)
                if not report.ok:
                    raise RestoreFailed(
                        f"restore into {target.describe()} rolled back: the restored library "
                        "fails verification:\n  " + "\n  ".join(report.problems)
                    )
                record_restore(conn, manifest, run_by=actor, signer=signer,  # after the rows
                               tag=tag)
                recorded = latest(conn)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
                db.raise_sql_error(target, exc, "the restore")
            raise RestoreFailed(
                f"restore into {target.describe()} failed and was rolled back; the target is "
                f"unchanged:\n  {secrets.redact(str(exc).strip())}"
            ) from None
    return RestoreResult(counts, report, recorded if isinstance(recorded, Provenance) else None,
                         migrated)


def run_restore(settings: Settings, target: Target, options: RestoreOptions, echo: Echo,
                ask: Ask) -> RestoreResult:
    """The whole ``inv restore``: print the target, check the dump before any connection (then
    start the target profile's emulator if it is stopped), show the target's
    counts next to the dump's, ask (unless ``options.assume_yes``), apply, report. Raises a
    :class:`~movelib.errors.MovelibError` on any failure; the target is then as it was."""
    from .emulator import start_if_stopped

    echo(f"target: {target.describe()}")  # first, as every task; no connection before the checks
    path = options.dump_file
    dump = check_dump_file(path, settings.migrations_dir)
    manifest = dump.manifest
    echo(f"dump: {path.name} (sha256 {manifest.sha256[:12]}..., {manifest.size} bytes, "
         f"from PostgreSQL {manifest.source_server_version}, created {manifest.created_at})")
    # still no connection: the signature is checked over the manifest's bytes as they were read
    # (which pin the dump's sha256), never over a second read of the file
    sig_path = signature_path(manifest_path(path))
    signature = read_signature_file(sig_path)
    _checkpoint("signature read")
    signer = check_signature(dump.manifest_bytes, signature, where=str(sig_path),
                             manifest_name=manifest_path(path).name,
                             allowed_signers=settings.allowed_signers,
                             required=options.require_signature)
    echo(f"signature: {signer.describe() if signer else 'none'}")
    tag = proven_tag(settings.root, manifest, dump.manifest_bytes) if signer else None
    start_if_stopped(target, settings.emulator_for, echo)
    plan = _plan(target, dump)
    _checkpoint("target planned")
    for table, want in manifest.row_counts.items():
        have = plan.current_counts.get(table)
        echo(f"  {table:<22} now {'absent' if have is None else have:>8}  ->  {want:>8}")
    if not options.assume_yes:
        ask(f"This replaces the movement tables of {target.describe()}.")
    result = restore(plan, lock_timeout=options.lock_timeout, permission=options.permission,
                     signer=signer, migrations_dir=settings.migrations_dir, tag=tag)
    if result.migrated:
        echo(f"migrations: applied {', '.join(result.migrated)} after the dump's (it predates "
             "them), in the same transaction")
    if result.provenance:
        echo(f"provenance: recorded; the database {result.provenance.describe()}")
    counts = result.verification.counts
    echo(f"restore: done; row counts match the manifest; verify: ok "
         f"(library {counts['library']}, audit {counts['audit_log']})")
    return result
