"""A merged library verified in two halves: the whole library checked before the merge writes,
while the dump is read for the rows it adds (:func:`movelib.ship.merge.apply_merge` runs it
beside the reading), and the slugs it writes checked after the writes.

The halves stand for the whole check after the writes (:func:`movelib.seed.verify.check`,
without recomputing content) only when neither finds anything, and then the restore reports the
whole check's "ok" with the counts it would give. A slug the merge leaves alone holds after it
what it held before, and each invariant is one slug's rows, except where a library row's draft
is another version's: the halves then find a problem (strictly: publishing never writes that),
so that no published draft of a slug left alone hangs on a row the merge removes (a kept row
cannot hang on a removed draft: the foreign key refuses the removal). Whenever a half
finds anything, the restore runs the whole check after its writes, which words the problems
and decides what a kept version whose chain is broken needs. (The first half checks every slug,
not only those left alone: a filter costs more than it saves.) Three of the first half's
invariants (a row's draft not its own, a pointer behind, a retired slug without its RETIRED
row) are what the restore's comparison found (:class:`~movelib.ship.comparison.Invariants`): it
reads every library row with its draft and pointer before the writes anyway, and the first half
is then the audit trails and the drafts without their row, about as long as the dump's reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..database.tables import COUNTED_TABLES, require_schema, row_count, rows_per_version
from ..database.target import Target
from ..seed.audit_chains import Trails, audit_trails
from ..seed.verify import (
    BEHIND,
    DRAFTLESS,
    DRAFTLESS_STRICT,
    UNPUBLISHED,
    UNPUBLISHED_STRICT,
    UNRETIRED,
    VerifyReport,
    invariant,
)
from .comparison import Invariants
from .merge_plan import Changes

MOST_TOUCHED = 1_000  # slugs a merge may write for the halves; more: the whole check after it
_AMONG = " AND {slug} = ANY(%(slugs)s)"  # a query's rows restricted to some slugs


def touched(found: Changes) -> list[str]:
    """The slugs ``found`` writes: versions added or removed, pointers set or cleared."""
    return sorted({s for s, _ in found.added} | {s for s, _ in found.removed} | set(found.moved)
                  | set(found.pointed) | set(found.cleared) | found.retired)


@dataclass(frozen=True)
class Half:
    """What one half found: whether anything, and its audit rows by action."""

    clean: bool
    by_action: dict[str, int]
    audit_rows: int


def half(conn: psycopg.Connection, slugs: list[str] | None = None,
         compared: Invariants | None = None) -> Half:
    """Every invariant of the library (strictly), or of its slugs in ``slugs``, on ``conn`` in
    the caller's transaction; those the comparison checked on every row (``compared``) taken
    from it."""
    scope = "" if slugs is None else _AMONG
    params = None if slugs is None else {"slugs": slugs}
    trail = audit_trails(conn, scope, params)
    clean = not (trail.broken or trail.orphans)
    queries = [(UNPUBLISHED, UNPUBLISHED_STRICT)]
    if compared is not None and compared.checked:
        clean = clean and not compared.broken
        if compared.unpointed is None:  # too many retired slugs for the comparison
            queries.append((UNRETIRED, ""))
    else:
        queries += [(DRAFTLESS, DRAFTLESS_STRICT), (BEHIND, ""), (UNRETIRED, "")]
    for query, strict in queries:
        clean = clean and not conn.execute(invariant(query, scope, strict), params).fetchone()
    return Half(clean, trail.by_action, trail.total)


def before(conn: psycopg.Connection, slugs: list[str], compared: Invariants | None = None,
           ) -> tuple[Half, Trails]:
    """The first half, before the writes: the whole library (three of its invariants as the
    comparison found them, ``compared``, when it checked them), and the audit trails of the
    slugs the merge writes (the rows they hold before, for the counts)."""
    return half(conn, None, compared), audit_trails(conn, _AMONG, {"slugs": slugs})


def whole(conn: psycopg.Connection, target: Target, first: tuple[Half, Trails], after: Half,
          ) -> VerifyReport | None:
    """The whole check's report, from the first half and ``after`` (the slugs written, checked
    after the writes), when neither found anything; None: run the whole check."""
    library, written = first
    if not (library.clean and after.clean):
        return None
    require_schema(conn, target)
    report = VerifyReport(target=target.masked())
    by_action = {a: library.by_action.get(a, 0) - written.by_action.get(a, 0)
                 + after.by_action.get(a, 0)
                 for a in library.by_action.keys() | after.by_action.keys()}
    for table in COUNTED_TABLES:
        count = (library.audit_rows - written.total + after.audit_rows
                 if table == "movement_audit_log" else row_count(conn, table))
        report.counts[table.removeprefix("movement_")] = count
    report.audit_by_action = {a: n for a, n in sorted(by_action.items()) if n}
    report.library_versions = rows_per_version(conn)
    return report
