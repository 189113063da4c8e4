"""What a restore into tables that exist writes, decided before it writes anything: the
target's library compared with the dump's, version by version (slug, version and content hash,
recomputed from each document on the target's side). Written by :mod:`movelib.ship.merge`.

* a version both hold with the same content is kept as the target has it: its id, draft and
  audit history (the application's references stay);
* a version only the dump holds is added with its draft, its audit chain and the seed run that
  published it, under new ids of the target's;
* a version only the target holds, or held by both with different content (a conflict), is
  removed with its draft and audit rows (then the dump's is added), unless a row of another
  table references it: then the restore is refused before any write, naming the rows
  (:func:`movelib.database.dependents.references`);
* each slug's current pointer is set as the dump has it (a movement the dump retired is
  retired, with the dump's RETIRED audit row).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..database.tables import MOVEMENT_TABLES, NOT_ITS_DOCUMENT
from ..seed.drift import same
from .comparison import Invariants, Pair, Same, side_by_side
from .dumpformat import NOT_DUMPED
from .dumplibrary import DumpLibrary

Key = tuple[str, int]  # (slug, version)


@dataclass
class Changes:
    """What a merging restore writes, decided under the restore's lock."""

    everything: bool = False  # the target's library is empty: every version of the dump is added
    bulk: bool = False  # and every movement table is empty: the rows are COPYed with their ids
    added: set[Key] = field(default_factory=set)
    removed: list[Key] = field(default_factory=list)  # the target's versions that go
    moved: dict[str, int] = field(default_factory=dict)  # pointers moved forward: slug -> version
    pointed: dict[str, int] = field(default_factory=dict)  # pointers (re)inserted
    cleared: list[str] = field(default_factory=list)  # pointers removed (retired, or re-pointed)
    retired: set[str] = field(default_factory=set)  # slugs the dump retired that the target had current
    kept: int = 0  # versions kept as the target has them
    added_count: int = 0  # versions added (every one when ``everything``)
    # what the comparison found of the target's library (the merge's first check needs no more)
    invariants: Invariants = field(default_factory=Invariants)

    @property
    def writes(self) -> bool:
        return bool(self.everything or self.added or self.removed or self.moved or self.pointed
                    or self.cleared)

    def summary(self) -> str:
        pointers = len(self.moved) + len(self.pointed) + len(
            [s for s in self.cleared if s not in self.pointed])
        retired = f", {len(self.retired)} movement(s) retired" if self.retired else ""
        return (f"{self.added_count} version(s) added, {len(self.removed)} removed, {self.kept} "
                f"kept as the target has them (ids and audit history), {pointers} current "
                f"pointer(s) set{retired}")

    def as_dict(self) -> dict[str, int]:
        return {"added": self.added_count, "removed": len(self.removed), "kept": self.kept,
                "pointers": len(self.moved) + len(self.pointed), "retired": len(self.retired)}


def _library_empty(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT NOT EXISTS (SELECT FROM movement_library)").fetchone()
    return bool(row and row[0])


def everything(conn: psycopg.Connection, versions: int) -> Changes:
    """What a merge into a target whose library is empty writes: all ``versions`` of the dump.
    When every dumped movement table is empty too (``inv migrate``, then ``inv restore``), there
    is no id or history of the target's to keep: the rows are COPYed as the dump holds them, ids
    included, as a load into an empty database does (the tables, and all the application built
    on them, stay), provided the role may then move the tables' sequences past those ids
    (UPDATE on each sequence; a least-privilege restore role may only use them, and gets the
    rows inserted under new ids instead)."""
    tables = [t for t in MOVEMENT_TABLES if t not in NOT_DUMPED]  # the label stays the target's
    empty = sql.SQL(" AND ").join(
        sql.SQL("NOT EXISTS (SELECT FROM {})").format(sql.Identifier(t)) for t in tables)
    row = conn.execute(sql.SQL(
        "SELECT {empty} AND (SELECT coalesce(bool_and(has_sequence_privilege(s, 'UPDATE')), true) "
        "FROM (SELECT CASE WHEN EXISTS (SELECT FROM pg_attribute WHERE attrelid = t::regclass "
        "AND attname = 'id' AND NOT attisdropped) THEN pg_get_serial_sequence(t, 'id') END "
        "FROM unnest(%s::text[]) AS t) AS q (s) WHERE s IS NOT NULL)").format(empty=empty),
        (tables,)).fetchone()
    return Changes(everything=True, bulk=bool(row and row[0]), added_count=versions)


def changes(conn: psycopg.Connection, library: DumpLibrary) -> Changes:
    """Compare the target on ``conn`` (in the caller's transaction) with the dump's ``library``,
    both streamed slug by slug: what the merge must write."""
    found = Changes()
    if _library_empty(conn):
        return everything(conn, library.versions.count)
    with side_by_side(conn, library, found.invariants) as pairs:
        for pair in pairs:
            compare(found, pair)
    found.added_count = len(found.added)
    return found


def compare(found: Changes, pair: Pair | Same) -> None:
    """Add to ``found`` what one slug needs: the target's movement and the dump's (either may
    be None), or movements the same on both sides, counted. ``found.added_count`` is left to
    the caller."""
    if isinstance(pair, Same):
        found.kept += pair.versions
        return
    ours, theirs = pair
    if ours is not None and same(ours, theirs):
        found.kept += len(ours.versions)  # the same on both sides: the common case
        return
    slug = (ours or theirs).slug  # type: ignore[union-attr]  # one of them is there
    have = ours.versions if ours else {}
    want = theirs.versions if theirs else {}
    # a row that is not its document's projection compares as a text, not a hash: the same
    # text in a (forged) dump is not the same content, and that version is never kept
    for version, digest in want.items():
        if have.get(version) == digest != NOT_ITS_DOCUMENT:
            found.kept += 1
        else:
            found.added.add((slug, version))
    gone = {v for v, digest in have.items() if want.get(v) != digest or digest == NOT_ITS_DOCUMENT}
    found.removed += [(slug, v) for v in sorted(gone)]
    now = ours.current if ours else None
    then = theirs.current if theirs else None
    if now is not None and (then is None or then < now or now in gone):
        found.cleared.append(slug)
        now = None
        if then is None and theirs is not None:
            found.retired.add(slug)
    if then is not None:
        if now is None:
            found.pointed[slug] = then
        elif then != now:
            found.moved[slug] = then
