"""The target's library beside the dump's, slug by slug: what a restore's preview and merge
plan are made of (:mod:`movelib.ship.preview`, :mod:`movelib.ship.merge_plan`): the pairs of
movements that differ, and counts of those that do not (:class:`Same`).

What the pairs must say (SECURITY.md): a version of the target is the dump's when its content
hash, recomputed from the document the target holds, is the dump's, and its library row is that
document's projection (a row edited behind the triggers' back never is). Recomputing every hash
(the canonical text built in SQL) was half of a merge of ten versions into 100k. So the server
is first asked for less: each version's stored hash, and the sha256 of its draft's document as
COPY writes it (jsonb's text, each backslash doubled), where the row is that document's
projection. The dump's side holds the same digest of each of its drafts' document field, taken
in the check before any connection (:class:`DumpLibrary`).

A version is decided "the same" at once when its row is its document's projection, the
document's text is byte for byte the dump's draft's (so the same document, and the same
recomputed hash), its stored hash is the dump's, and the dump's draft hashes to the dump's
hash (computed here, in the check before any connection, by movelib's own canonical form, for
documents of a movement's shape, whose SQL form is held to it). The recomputation would then
give the dump's hash too, whatever was edited on either side: a dump of a database edited
behind its triggers, restored into that database, is not taken for the same.

A movement is decided at once when every version is, and its current version is the dump's.
The dump's side comes in blocks of rows shaped as the target's query gives them
(:meth:`DumpLibrary.blocks`): a block equal to the target's next rows is counted as it is (no
loop over its movements in Python), any other is compared slug by slug. Every movement that
differs has the hashes of its undecided versions recomputed, after the stream, for those
versions only, and its pair is given after the counts of the rest (in slug order among
themselves). Where the target
predates the recomputation (migration 0004) or the dump holds no drafts' documents, every hash
is recomputed in the one stream (:func:`target_movements`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import IO, Any, NamedTuple

import psycopg

from ..base.spill import dump_block, load_blocks
from ..database import db
from ..database.tables import NOT_ITS_DOCUMENT, RETIRED, action_literal, by_slug, table_exists
from ..seed.drift import (
    Movement,
    library_movements,
    merge,
    merge_keyed,
    movements,
    slug_key,
)
from .dumplibrary import NO_DRAFT, DumpLibrary, Lookahead, Row

# Before migration 0004 the stored hashes are all there is; before the versions migration (no
# movement_current) no movement is current.
_STORED = f"""
SELECT l.slug, l.version, l.content_hash, c.version
  FROM movement_library l LEFT JOIN movement_current c ON c.slug = l.slug
 ORDER BY {by_slug("l.slug")}, l.version
"""
_STORED_BEFORE_VERSIONS = f"""
SELECT slug, version, content_hash, NULL::int FROM movement_library
 ORDER BY {by_slug()}, version
"""


@contextmanager
def target_movements(conn: psycopg.Connection) -> Iterator[Iterator[Movement]]:
    """The target's library (in the caller's transaction), slug by slug in byte order; nothing
    when it has none."""
    if not table_exists(conn, "movement_library"):
        yield iter(())
    elif table_exists(conn, "movement_library_content"):
        with library_movements(conn) as found:
            yield found
    else:  # a database before 0004: the stored hashes are all there is
        query = (_STORED if table_exists(conn, "movement_current")
                 else _STORED_BEFORE_VERSIONS)
        with db.stream(conn, query) as rows:
            yield movements(rows)


Pair = tuple[Movement | None, Movement | None]


class Same(NamedTuple):
    """Movements the same on both sides, counted: what the comparison gives for them instead of
    their pairs (nothing of them is written or shown)."""

    movements: int
    versions: int


@dataclass
class Invariants:
    """Three of the library's invariants (:mod:`movelib.seed.verify`: DRAFTLESS strictly,
    BEHIND, UNRETIRED), checked on the target's rows as the comparison reads them, so that the
    merge's first half of the library's check (:mod:`movelib.ship.merge_check`) need not read
    the tables again: ``checked`` once every row was read, ``broken`` where one breaks. The
    latest versions of slugs without a pointer are looked up in the audit log (their RETIRED
    rows) after the rows; past :data:`MOST_UNPOINTED` of them, ``unpointed`` is None and
    UNRETIRED is left to the first half."""

    checked: bool = False
    broken: bool = False
    unpointed: list[tuple[str, int]] | None = field(default_factory=list)

    def block(self, rows: list[Row]) -> None:
        """Rows whose draft column is the dump's (no draftless row): a slug's pointer must be
        at its latest version (its last row), or the slug retired."""
        for row, following in zip(rows, [*rows[1:], None], strict=True):
            if following is None or following[0] != row[0]:
                self._latest(row)

    def slug(self, rows: list[tuple[Any, ...]]) -> None:
        """One slug's rows, every invariant."""
        if any(row[5] for row in rows):
            self.broken = True
        self._latest(rows[-1])

    def _latest(self, row: tuple[Any, ...]) -> None:
        if row[4] is not None:
            self.broken = self.broken or row[4] != row[1]
        elif self.unpointed is not None:
            self.unpointed.append((row[0], row[1]))
            if len(self.unpointed) > MOST_UNPOINTED:
                self.unpointed = None

    def finish(self, conn: psycopg.Connection) -> None:
        """After the rows: the slugs without a pointer have their RETIRED rows."""
        if self.unpointed:
            row = conn.execute(_UNRETIRED, ([s for s, _ in self.unpointed],
                                            [v for _, v in self.unpointed])).fetchone()
            self.broken = self.broken or bool(row and row[0])
        self.checked = True


MOST_UNPOINTED = 10_000  # retired slugs the comparison checks; more: the first half does
_UNRETIRED = f"""
SELECT EXISTS (SELECT FROM unnest(%s::text[], %s::integer[]) AS k (slug, version)
                WHERE NOT EXISTS (SELECT FROM movement_audit_log a
                                   WHERE a.slug = k.slug AND a.version = k.version
                                     AND a.action = {action_literal(RETIRED)}))
"""


RECOMPUTED_PER_QUERY = 5_000  # versions whose hash one query recomputes

# The row's projection test is movement_library_content's (migration 0004), the digest is of
# jsonb's text as COPY writes it: without a control character (jsonb escapes them), a backslash
# is all COPY escapes. The last column is for the library's check (Invariants): whether the
# row's draft is not its own published one (verify's DRAFTLESS, strictly). (No lookup of the
# audit log here: a subquery among the columns keeps them from the parallel workers.)
_DOCUMENTS = f"""
SELECT l.slug, l.version, l.content_hash,
       CASE WHEN (l.slug, l.name, l.classification, l.equipment, l.primary_muscles,
                  l.secondary_muscles, l.level, l.instructions, l.aliases, l.laterality, l.force,
                  l.mechanic, l.coaching_cues)
                 IS NOT DISTINCT FROM
                 (d.slug, d.name, d.classification, d.equipment, d.primary_muscles,
                  d.secondary_muscles, d.level, d.instructions, coalesce(d.aliases, '{{}}'),
                  d.laterality, d.force, d.mechanic, coalesce(d.coaching_cues, '{{}}'))
            THEN sha256(convert_to(replace(s.document::text, '\\', '\\\\'), 'UTF8')) END,
       c.version,
       coalesce(s.id IS NULL OR s.status <> 'published' OR s.content_hash <> l.content_hash
                OR s.slug <> l.slug OR s.version <> l.version, false)
  FROM movement_library l
  LEFT JOIN movement_staging s ON s.id = l.staging_id
  LEFT JOIN LATERAL jsonb_to_record(s.document) AS d (slug text, name text, classification text,
       equipment text[], primary_muscles text[], secondary_muscles text[], level text,
       instructions text[], aliases text[], laterality text, force text, mechanic text,
       coaching_cues text[]) ON true
  LEFT JOIN movement_current c ON c.slug = l.slug
 ORDER BY {by_slug("l.slug")}, l.version
"""
_RECOMPUTED = f"""
SELECT v.slug, v.version, coalesce(v.content_hash, '{NOT_ITS_DOCUMENT}')
  FROM movement_library_content v
  JOIN unnest(%s::text[], %s::integer[]) AS k (slug, version)
    ON k.slug = v.slug AND k.version = v.version
"""

# A slug's versions as the slow path compares them, in version order: (version, stored hash,
# document digest); the same on both sides is the same movement. A version that cannot be
# decided so has a digest no sha256 is, one for each side (never equal).
Versions = tuple[tuple[int, str, bytes], ...]
NOT_A_PROJECTION = b"not its document's projection"
# One slug of the target: slug, versions, current version
Held = tuple[str, Versions, int | None]
# One slug of the dump: its movement's fields (slug, the hashes it holds, current version) and
# its versions
Dumped = tuple[tuple[str, dict[int, str], int | None], Versions]


@contextmanager
def side_by_side(conn: psycopg.Connection, dump: DumpLibrary,
                 invariants: Invariants | None = None) -> Iterator[Iterator[Pair | Same]]:
    """``with side_by_side(conn, dump) as pairs:`` the target's movements on ``conn`` (in the
    caller's transaction) beside the dump's, each side None where it lacks the slug, every
    version's hash as the recomputation gives it; movements decided the same at once are
    counted (:class:`Same`) instead of paired."""
    if dump.documents.count == 0 or not table_exists(conn, "movement_library_content"):
        with target_movements(conn) as here:
            yield merge(here, dump.movements())
        return
    with tempfile.TemporaryFile(prefix="movelib-differ-") as differing:
        yield _pairs(conn, dump, differing, invariants or Invariants())


def _pairs(conn: psycopg.Connection, dump: DumpLibrary, differing: IO[bytes],
           invariants: Invariants) -> Iterator[Pair | Same]:
    """The dump's blocks of rows beside the target's: a block equal row for row to the
    target's next rows (and the target's next row of another slug) is counted at once; any
    other is compared slug by slug, each movement that differs kept in ``differing`` (then
    recomputed). Every row of the target is held to ``invariants`` on the way."""
    with db.stream(conn, _DOCUMENTS) as found:
        target = Lookahead(iter(found))
        last = b""  # the slug (UTF-8) last compared: the target's next must come after it
        for block in dump.blocks():
            rows = target.take(len(block))
            following = target.peek()
            if rows == block and (following is None or following[0] != block[-1][0]):
                invariants.block(block)
                yield Same(len(dict.fromkeys(map(_SLUG, block))), len(block))
            else:
                target.push(rows)
                same = _by_slug(_held(target, slug_key(block[-1][0]), last, invariants),
                                _dumped(block), differing)
                if same.movements:
                    yield same
            last = slug_key(block[-1][0])
        # what only the target holds
        _by_slug(_held(target, None, last, invariants), iter(()), differing)
    invariants.finish(conn)
    differing.seek(0)
    yield from _recomputed(conn, _read(differing))


_SLUG = itemgetter(0)


def _by_slug(here: Iterator[tuple[bytes, Held]], there: Iterator[tuple[bytes, Dumped]],
             differing: IO[bytes]) -> Same:
    """Compare ``here`` and ``there`` slug by slug: how many are the same; those that differ
    written to ``differing``."""
    movements = versions = 0
    for held, dumped in merge_keyed(here, there):
        if (held is not None and dumped is not None and held[1] == dumped[1]
                and held[2] == dumped[0][2]):
            movements += 1
            versions += len(held[1])
        else:
            dump_block((held, dumped), differing)
    return Same(movements, versions)


def _held(target: Lookahead, end: bytes | None, last: bytes, invariants: Invariants,
          ) -> Iterator[tuple[bytes, Held]]:
    """The target's next slugs up to ``end`` (its UTF-8; None: every one left), each after
    ``last`` (a slug's rows come together, the slugs in order), with their UTF-8; each held
    to ``invariants``."""
    while (row := target.peek()) is not None:
        key = slug_key(row[0])
        if end is not None and key > end:
            return
        if key <= last:
            raise RuntimeError(f"out of slug order: {row[0]!r}")
        rows = [row]
        target.take(1)
        while (row := target.peek()) is not None and row[0] == rows[0][0]:
            rows += target.take(1)
        invariants.slug(rows)
        yield key, (rows[0][0], tuple((version, stored, digest or NOT_A_PROJECTION)
                                      for _, version, stored, digest, *_ in rows),
                    rows[-1][4])  # the slug's current version, on each of its rows
        last = key


def _dumped(block: list[Row]) -> Iterator[tuple[bytes, Dumped]]:
    """``block``'s slugs as the slow path compares them, with their UTF-8."""
    for slug, group in groupby(block, key=_SLUG):
        rows = list(group)
        yield slug_key(slug), ((slug, {version: digest for _, version, digest, *_ in rows},
                            rows[0][4]),
                           tuple((version, digest, drafted or NO_DRAFT)
                                 for _, version, digest, drafted, *_ in rows))


def _read(handle: IO[bytes]) -> Iterator[tuple[Held | None, Dumped | None]]:
    return load_blocks(handle)


def _recomputed(conn: psycopg.Connection, differing: Iterator[tuple[Held | None, Dumped | None]],
                ) -> Iterator[Pair]:
    """The pairs of the movements that differ: each version of the target whose stored hash
    and document digest are not the dump's has its hash recomputed (a few thousand a query)."""
    while True:
        chunk: list[tuple[Held | None, Dumped | None, dict[int, str]]] = []
        keys: list[tuple[str, int]] = []
        for held, dumped in differing:
            theirs = {v: (digest, document) for v, digest, document in dumped[1]} if dumped else {}
            decided = {} if held is None else {
                v: stored for v, stored, document in held[1] if theirs.get(v) == (stored, document)}
            chunk.append((held, dumped, decided))
            if held is not None:
                keys += [(held[0], v) for v, _, _ in held[1] if v not in decided]
            if len(keys) >= RECOMPUTED_PER_QUERY:
                break
        if not chunk:
            return
        hashes = recompute(conn, keys) if keys else {}
        for held, dumped, decided in chunk:
            ours = None if held is None else Movement(held[0], {
                v: decided[v] if v in decided else hashes[(held[0], v)] for v, _, _ in held[1]},
                held[2])
            yield ours, None if dumped is None else Movement(*dumped[0])


def recompute(conn: psycopg.Connection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The target's ``keys`` (slug, version) with each hash recomputed from its document
    (:data:`NOT_ITS_DOCUMENT` for a row that is not its document's projection)."""
    return {(slug, version): digest for slug, version, digest in db.rows(
        conn, _RECOMPUTED, [k[0] for k in keys], [k[1] for k in keys])}
