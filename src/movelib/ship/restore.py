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

Before it asks and before it writes, a read-only look at the target
(:mod:`movelib.ship.restore_plan`) says whom it trusts and which signatures count
(:mod:`movelib.ship.quorum`: signers pinned in a production database, else the allowed_signers
file), whether the restore would be a rollback (:mod:`movelib.ship.rollback`) and what it would
replace (:mod:`movelib.ship.preview`); under the lock, in the transaction that writes, the same
checks are made again. What the restore then writes (a merge into the tables that exist, or a
load into an empty database), checks and records is :mod:`movelib.ship.restore_write`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import psycopg

from ..base import secrets
from ..base.console import mintty_hint
from ..base.defaults import LOCK_TIMEOUT
from ..base.errors import ArtifactError, ConfirmationRequired, RestoreCouldNotRun, RestoreFailed
from ..base.text import shown_path
from ..database import db
from ..database.guard import PROTECTED, Permission, check_protected
from ..database.migrations import (
    CHECKOUT_MIGRATIONS,
    apply_pending,
    pending_migrations,
)
from ..database.settings import Settings
from ..database.tables import environment_label
from ..database.target import Target
from ..source.datafile import Progress
from .copytext import NotANumber
from .drafts import HELPER_DRAFTS, Helper
from .dumplibrary import DumpLibrary
from .dumpreader import CHECKING, CheckedDump, Extents, Rows, RowsRead, layout_for, read_dump
from .manifest import check_size_and_sha256, manifest_path, read_manifest
from .merge_plan import Changes, changes
from .quorum import (
    Presented,
    Verdict,
    decide,
    read_presented,
    refuse_before_starting,
    unsigned,
)
from .release import proven_tag
from .restore_plan import RestoreOptions, RestorePlan, holds_tables, look, look_read_only
from .restore_write import RestoreResult, write
from .rollback import check_rollback
from .trust import read_trust

Echo = Callable[[str], None]
Ask = Callable[[str], None]  # returns when the person confirms; raises ConfirmationRequired


def _checkpoint(step: str) -> None:
    """Called between the reads of a restore's artifacts (``manifest read``, ``dump checked``,
    ``signature read``, ``target planned``): nothing by default. A test swaps files here to
    prove that what was checked is what is trusted and loaded."""


def check_dump_file(dump_file: Path, migrations_dir: Path = CHECKOUT_MIGRATIONS,
                    progress: Progress | None = None) -> CheckedDump:
    """Everything that is checked without a connection: the manifest (read once; its schema,
    migrations this checkout has), the size and sha256, and every line of the file (the pass
    that also gathers the dump's library for the preview), said to ``progress`` as it goes."""
    raw, manifest = read_manifest(dump_file)
    _checkpoint("manifest read")
    # a large dump's drafts hashed by a second process while this one checks the rest
    large = manifest.row_counts.get("movement_staging", 0) >= HELPER_DRAFTS
    with Helper(dump_file, manifest.compressed) if large else nullcontext() as helper:
        try:
            layout = layout_for(manifest, migrations_dir, str(manifest_path(dump_file)))
            library = DumpLibrary(derive_current=not any(t.name == "movement_current"
                                                          for t in layout.tables), helper=helper)
            read = RowsRead(progress, CHECKING, manifest.size)
            extents: Extents = {}
            # one read: the lines are checked as the file is hashed (a block ahead, on a second
            # thread), and its size and sha256 compared with the manifest's at the end
            for part in read_dump(dump_file, layout, manifest, extents=extents):
                if isinstance(part, Rows):
                    blocks = read.counted(part.blocks)
                    if library.wants(part.table):
                        library.feed(part.table, blocks, part.line, part.start)
                    else:
                        deque(blocks, maxlen=0)
            library.finish()
        except (ArtifactError, NotANumber) as exc:
            # a file that is not its manifest's says so first (and why: CRLF line endings, a
            # truncation), whichever line or part of it the reading stopped at
            check_size_and_sha256(dump_file, manifest)
            if isinstance(exc, NotANumber):
                raise ArtifactError(f"{shown_path(dump_file)}: {exc}; refusing the dump, nothing "
                                    "was touched") from None
            raise
    read.finish()
    _checkpoint("dump checked")
    return CheckedDump(dump_file, manifest, layout, raw, library, extents)


def plan_restore(target: Target, dump_file: Path, *,
                 migrations_dir: Path = CHECKOUT_MIGRATIONS) -> RestorePlan:
    """Check the dump (no connection), then read the target's current counts and preview."""
    dump = check_dump_file(dump_file, migrations_dir)
    return look_read_only(target, dump, unsigned(manifest_path(dump_file).name),
                          RestoreOptions(dump_file))


def _judge(conn: psycopg.Connection, target: Target, label: str | None,
           presented: Presented) -> Verdict:
    """Whose signatures count, by the target's trust source (read in the caller's transaction)."""
    pinned = read_trust(conn, target.dbname) if label in PROTECTED else None
    return decide(presented, label, pinned, target)


def restore(plan: RestorePlan, *, lock_timeout: float = LOCK_TIMEOUT,
            permission: Permission | None = None, presented: Presented | None = None,
            allow_downgrade: bool = False, migrations_dir: Path = CHECKOUT_MIGRATIONS,
            tag: str | None = None, progress: Progress | None = None) -> RestoreResult:
    """Apply ``plan`` all-or-nothing. Under the target's lock, before anything is written, the
    protected check, whose signatures count (``presented``, by the target's trust source) and
    the rollback check are made again: what the plan read may have changed since. Its lines are
    checked again as they load, and the file's sha256 before the commit, so a dump changed
    since its check is never committed.

    A target that holds the movement tables gets the dump merged into them (:mod:`.merge`):
    its migrations brought up to this checkout's (each schema change in short lock tries), then
    only the versions that differ written, under ROW EXCLUSIVE locks; the library and its
    pointers must then equal the manifest's (counts and digest). A database without them gets
    the dump's own SQL and every row (a bulk load; there is nothing of anyone's to keep)."""
    target, manifest = plan.target, plan.manifest
    presented = presented or unsigned(manifest_path(plan.dump_file).name)
    merged: Changes | None = None
    migrated: tuple[str, ...] = ()
    with db.connect(target, task="restore", autocommit=True) as conn:
        try:
            if plan.merge is not None:
                # the schema first, in a transaction of its own (what `inv migrate` does): the
                # locks its DDL takes end with it, and the merge then holds ROW EXCLUSIVE only
                with db.locked(conn, target, task="restore", timeout=lock_timeout):
                    if holds_tables(conn) and pending_migrations(conn, migrations_dir):
                        check_protected(conn, target, permission or Permission(), "restore")
                        migrated = tuple(apply_pending(conn, target, migrations_dir,
                                                       lock_timeout=lock_timeout).applied)
            with db.locked(conn, target, task="restore", timeout=lock_timeout):
                check_protected(conn, target, permission or Permission(), "restore")
                label = environment_label(conn)
                verdict = _judge(conn, target, label, presented)
                check_rollback(conn, target, manifest, signed=verdict.signed,
                               allow=allow_downgrade)
                if holds_tables(conn):
                    migrated += tuple(apply_pending(conn, target, migrations_dir,
                                                    lock_timeout=lock_timeout).applied)
                    merged = changes(conn, plan.dump.library)
                result = write(conn, target, plan.dump, label, merged, verdict.signers,
                               lock_timeout=lock_timeout, migrations_dir=migrations_dir, tag=tag,
                               progress=progress)
        except psycopg.Error as exc:
            _failed(target, exc)
    return replace(result, migrated=migrated + result.migrated)


@dataclass(frozen=True)
class Prepared:
    """What a restore checked before any connection: the dump, and its signatures (each file
    read once, each sound over the manifest's bytes as read)."""

    dump: CheckedDump
    presented: Presented


def prepare(settings: Settings, target: Target, options: RestoreOptions, echo: Echo,
            progress: Progress | None = None) -> Prepared:
    """Everything before a connection: print the target, refuse at once when nobody can be
    asked and ``--yes`` is not given (before an emulator starts), check the dump, read and check
    its signatures."""
    echo(f"target: {target.describe()}")  # first, as every task; no connection before the checks
    path = options.dump_file
    if not path.is_file():
        check_dump_file(path, settings.migrations_dir)  # bad usage first: it says why (exit 2)
    if not (options.assume_yes or options.dry_run or options.terminal):
        raise ConfirmationRequired(
            "refusing: there is no terminal to ask for confirmation on; pass --yes to confirm, "
            f"or --dry-run to see what the restore would do (nothing was touched){mintty_hint()}")
    dump = check_dump_file(path, settings.migrations_dir, progress)
    manifest = dump.manifest
    echo(f"dump: {path.name} (sha256 {manifest.sha256[:12]}..., {manifest.size} bytes, "
         f"from PostgreSQL {manifest.source_server_version}, created {manifest.created_at})")
    # still no connection: the signatures are checked over the manifest's bytes as they were
    # read (which pin the dump's sha256), never over a second read of the file
    presented = read_presented(manifest_path(path), dump.manifest_bytes, settings.allowed_signers,
                               required=options.require_signature)
    _checkpoint("signature read")
    return Prepared(dump, presented)


def finish(settings: Settings, target: Target, prepared: Prepared, options: RestoreOptions,
           echo: Echo, ask: Ask, progress: Progress | None = None) -> RestoreResult | None:
    """After :func:`prepare`: start the target profile's emulator if it is stopped, look at the
    target (trust, rollback, preview, what a merge writes, counts), say it, refuse or (a dry
    run) stop, ask unless ``options.assume_yes``, apply, report. None after a dry run that would
    be allowed.

    The look, the question and the write happen in one transaction that holds the target's
    lock: what was shown is what is written, and the target's library is compared once. A dry
    run looks read only, without the lock. A target behind this checkout's migrations is the
    exception: they are applied after the question, in a transaction of their own, and the
    merge then looks again (:func:`restore`)."""
    from ..database.emulator import start_if_stopped, would_start

    if would_start(target):
        refuse_before_starting(target, prepared.presented)
    start_if_stopped(target, settings.emulator_for, echo)
    if options.dry_run:
        plan = look_read_only(target, prepared.dump, prepared.presented, options, progress)
        _checkpoint("target planned")
        for line in plan.lines():
            echo(line)
        if plan.refusal is not None:
            echo("dry run: the restore would be refused (below); nothing was written")
            raise plan.refusal
        asked = (" once the database's name is typed or given with --confirm"
                 if plan.label in PROTECTED and options.permission.confirm is None else "")
        echo(f"dry run: the restore would be allowed{asked}; nothing was written")
        return None
    manifest = prepared.dump.manifest
    result: RestoreResult | None = None
    with db.connect(target, task="restore", autocommit=True) as conn:
        try:
            with db.locked(conn, target, task="restore", timeout=options.lock_timeout):
                plan = look(conn, target, prepared.dump, prepared.presented, options, progress)
                _checkpoint("target planned")
                for line in plan.lines():
                    echo(line)
                if plan.refusal is not None:
                    raise plan.refusal
                assert plan.verdict is not None  # no refusal: the signatures were judged
                if not options.assume_yes:
                    ask(plan.question)
                tag = (proven_tag(settings.root, manifest, prepared.dump.manifest_bytes)
                       if plan.verdict.signed else None)
                if plan.merge is None or not pending_migrations(conn, settings.migrations_dir):
                    check_protected(conn, target, options.permission, "restore")
                    result = write(conn, target, plan.dump, plan.label, plan.merge,
                                   plan.verdict.signers, lock_timeout=options.lock_timeout,
                                   migrations_dir=settings.migrations_dir, tag=tag,
                                   progress=progress)
        except psycopg.Error as exc:
            _failed(target, exc)
    if result is None:  # migrations first, in their own transaction; the merge looks again
        result = restore(plan, lock_timeout=options.lock_timeout, permission=options.permission,
                         presented=prepared.presented, allow_downgrade=options.allow_downgrade,
                         migrations_dir=settings.migrations_dir, tag=tag, progress=progress)
    for line in result.lines():  # the plan was said before the question; then the result
        echo(line)
    return result


ENCODING_ERRORS = ("22021", "22P05")  # character_not_in_repertoire, untranslatable_character


def _failed(target: Target, exc: psycopg.Error) -> NoReturn:
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        db.raise_sql_error(target, exc, "the restore")
    # refused by a check (movelib's triggers raise P0001, constraints are class 23, a value the
    # column cannot be class 22): a "no"; a character the database's encoding cannot hold, or
    # anything else, is the server unable to do it (2, as the same error in a seed)
    state = exc.sqlstate or ""
    refused = state.startswith(("P0", "23", "22")) and state not in ENCODING_ERRORS
    raise (RestoreFailed if refused else RestoreCouldNotRun)(
        f"restore into {target.describe()} failed and was rolled back; the target is "
        f"unchanged:\n  {secrets.redact(str(exc).strip())}") from None


def run_restore(settings: Settings, target: Target, options: RestoreOptions, echo: Echo,
                ask: Ask, progress: Progress | None = None) -> RestoreResult | None:
    """The whole ``inv restore``: print the target, check the dump and its signatures before
    any connection (then start the target profile's emulator if it is stopped), show whom the
    target trusts, what the restore replaces and the counts, ask (unless
    ``options.assume_yes``), apply, report. Raises a :class:`~movelib.base.errors.MovelibError` on
    any failure or refusal; the target is then as it was. A dry run returns None."""
    return finish(settings, target, prepare(settings, target, options, echo, progress), options,
                  echo, ask, progress)
