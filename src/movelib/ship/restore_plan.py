"""A restore's read-only look at its target: its label, whom it trusts and whether the
signatures count, whether the dump would be a rollback, what it would replace (the preview), what
a merge would write and whom that would break, the row counts. A restore shows this plan before
it asks; the same look is made again in the locked transaction that writes
(:mod:`movelib.ship.restore`). Every refusal found is kept in the plan, not raised, so that the
preview is shown first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg

from ..base.defaults import LOCK_TIMEOUT
from ..base.errors import MovelibError
from ..database import db
from ..database.dependents import Dependent, checkout_own, dependents, references, summary
from ..database.guard import PROTECTED, Permission, check_protected
from ..database.migrations import CHECKOUT_MIGRATIONS
from ..database.tables import MOVEMENT_TABLES, current_counts, environment_label
from ..database.target import Target
from ..database.yoyo_tables import YOYO_LOCK_TABLE, YOYO_TABLES
from ..source.datafile import Progress
from .comparison import Pair, Same
from .dumpreader import CheckedDump
from .manifest import Manifest
from .merge_plan import Changes, compare, everything
from .preview import Preview, preview
from .quorum import Presented, Verdict, decide, trust_source
from .restore_write import MERGE_COUNTED, refuse_references
from .rollback import check_rollback
from .trust import read_trust

COMPARING = "comparing with the target (movements)"  # the look's step, as progress names it


@dataclass(frozen=True)
class RestoreOptions:
    dump_file: Path
    assume_yes: bool = False  # --yes: do not ask
    lock_timeout: float = LOCK_TIMEOUT
    permission: Permission = field(default_factory=Permission)  # for a production target
    require_signature: bool = False  # --require-signature (a production target always does)
    allow_downgrade: bool = False  # --allow-downgrade: replace a newer release on purpose
    dry_run: bool = False  # --dry-run: the checks and the preview, then exit; nothing written
    terminal: bool = True  # whether a person can be asked (the task says; False refuses early)


@dataclass(frozen=True)
class RestorePlan:
    target: Target
    dump: CheckedDump
    current_counts: dict[str, int | None]
    label: str | None = None
    trust: str = ""  # whom the target trusts (quorum.trust_source)
    verdict: Verdict | None = None  # whose signatures count (None when refused)
    preview: Preview | None = None
    refusal: MovelibError | None = None  # why the restore would be refused, found read only
    downgrade: str | None = None  # an allowed downgrade, said
    merge: Changes | None = None  # what a merge writes (None: a load into an empty database)
    dependents: tuple[Dependent, ...] = ()  # what others built on the movement tables: kept

    @property
    def dump_file(self) -> Path:
        return self.dump.path

    @property
    def manifest(self) -> Manifest:
        return self.dump.manifest

    def lines(self) -> list[str]:
        lines = [f"trust: {self.trust}"] if self.trust else []
        lines += self.verdict.lines() if self.verdict else []
        if self.downgrade:
            lines.append(f"downgrade: allowed (--allow-downgrade): {self.downgrade}")
        lines += self.preview.lines() if self.preview else []
        if self.merge is None:
            lines.append("load: the target holds no movement tables: they are created and the "
                         "dump's rows loaded")
        else:
            lines.append(f"merge: into the tables that exist: {self.merge.summary()}")
            if self.dependents:
                lines.append(f"kept: what others built on the movement tables "
                             f"({summary(self.dependents)}):")
                lines += [f"  {d.line()}" for d in self.dependents]
        for table, want in self.manifest.row_counts.items():
            if self.merge is not None and table not in MERGE_COUNTED:
                continue  # a merge keeps the target's history: only the library must match
            have = self.current_counts.get(table)
            lines.append(f"  {table:<22} now {'absent' if have is None else have:>8}  ->  {want:>8}")
        return lines

    @property
    def question(self) -> str:
        if self.merge is None:
            return f"This loads the movement tables into {self.target.describe()}."
        return (f"This merges the dump into the movement tables of {self.target.describe()} "
                f"({self.merge.added_count} version(s) added, {len(self.merge.removed)} removed).")


def holds_tables(conn: psycopg.Connection) -> bool:
    """Whether the target holds any table a dump carries (movelib's or yoyo's): then a restore
    merges into them; otherwise it creates them and loads the dump (nothing to keep)."""
    row = conn.execute("SELECT bool_or(to_regclass(t) IS NOT NULL) FROM unnest(%s::text[]) AS t",
                       ([*MOVEMENT_TABLES, *YOYO_TABLES, YOYO_LOCK_TABLE],)).fetchone()
    return bool(row and row[0])


def _permitted(conn: psycopg.Connection, target: Target, permission: Permission) -> None:
    """The protected check, without asking: a typed name is asked for by the restore itself."""
    if permission.allow_protected and permission.confirm is None:
        return
    check_protected(conn, target, permission, "restore")


class _Compared:
    """``each`` for every pair the preview compares, every thousandth said to ``progress``, and
    the count once more at the end (:meth:`finish`)."""

    def __init__(self, each: Callable[[Pair | Same], None], progress: Progress | None) -> None:
        self.each, self.progress, self.count = each, progress, 0

    def __call__(self, pair: Pair | Same) -> None:
        self.each(pair)
        said = self.count // 1000
        self.count += pair.movements if isinstance(pair, Same) else 1
        if self.progress is not None and self.count // 1000 != said:
            self.progress(COMPARING, self.count, None)

    def finish(self) -> None:
        if self.progress is not None and self.count:
            self.progress(COMPARING, self.count, self.count)


def look_read_only(target: Target, dump: CheckedDump, presented: Presented,
          options: RestoreOptions, progress: Progress | None = None) -> RestorePlan:
    """A read-only look at the target (:func:`look`), in a transaction of its own."""
    with db.connect(target, task="restore", autocommit=True) as conn:
        try:
            with db.work(conn, read_only=True):
                return look(conn, target, dump, presented, options, progress)
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "the restore's look at the target")
            raise


def look(conn: psycopg.Connection, target: Target, dump: CheckedDump, presented: Presented,
          options: RestoreOptions, progress: Progress | None = None) -> RestorePlan:
    """A look at the target in the caller's transaction: its label, whom it trusts and whether
    the signatures are enough, what it holds (a downgrade?), the preview, what a merge would
    write (made in the preview's one pass over the target's library) and whom it would break,
    the row counts. Every refusal found is kept, not raised, so that the preview is shown
    first."""
    refusal: MovelibError | None = None
    verdict, downgrade = None, None
    merged: Changes | None = None
    found: list[Dependent] = []
    label = environment_label(conn)
    pinned = read_trust(conn, target.dbname) if label in PROTECTED else None
    source = trust_source(presented, label, pinned)
    try:
        _permitted(conn, target, options.permission)
        verdict = decide(presented, label, pinned, target)
        downgrade = check_rollback(conn, target, dump.manifest,
                                   signed=verdict.signed, allow=options.allow_downgrade)
    except MovelibError as exc:
        refusal = exc
    planned = Changes()
    compared = _Compared(partial(compare, planned), progress)
    shown_preview = preview(conn, dump.library, compared, planned.invariants)
    compared.finish()
    counts = current_counts(conn, list(dump.manifest.row_counts))
    if holds_tables(conn):
        if counts.get("movement_library") and shown_preview.movements[0]:
            merged = planned
            merged.added_count = len(merged.added)
        else:
            merged = everything(conn, dump.library.versions.count)
        found = dependents(conn, checkout_own(CHECKOUT_MIGRATIONS))
        try:
            refuse_references(target, references(conn, merged.removed, merged.cleared))
        except MovelibError as exc:
            refusal = refusal or exc
    return RestorePlan(target, dump, counts, label, source, verdict, shown_preview, refusal,
                       downgrade, merged, tuple(found))
