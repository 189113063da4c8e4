"""What a restore would replace, shown before it asks and before it writes anything.

Computed as ``inv diff`` computes drift (:func:`movelib.seed.drift.merge` and
:func:`movelib.seed.drift.differ`), the target's library against the dump's, slug by slug: the
target's side streamed in the restore's read-only look at it, each version's hash recomputed
from its document; the dump's side collected from its ``movement_library`` and
``movement_current`` rows in the pass that checks every line before any connection (no extra
read of the file), sorted by slug on disk (:mod:`movelib.base.spill`), so memory stays flat however
large the dump. The dump's stored hashes stand for its content because the database refuses,
as they load, rows whose hash is not their document's (migration 0004). Movements are counted
as the restore changes them: added, removed, changed (retired, un-retired, or an older current
version), new versions and conflicts (one version with two contents), the first few of each by
slug, and the release the target holds is named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby, islice
from operator import itemgetter

import psycopg

from ..base.spill import SortedSpill
from ..base.text import shown
from ..database import db
from ..database.provenance import NOTHING, Provenance, latest
from ..database.tables import by_slug, table_exists
from ..seed.drift import KINDS as DRIFT_KINDS
from ..seed.drift import Difference, Movement, differ, library_movements, merge, movements
from .dumpformat import NotANumber, Table, copy_text, plain_number

SHOWN = 5  # slugs listed per kind
KINDS = ("added", "removed", "changed", "new version", "conflict")
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


@dataclass
class DumpLibrary:
    """The dump's library versions and current pointers, gathered as its rows are checked and
    kept sorted by slug on disk: (slug's UTF-8, version, stored hash) and (slug's UTF-8,
    version)."""

    versions: SortedSpill = field(default_factory=SortedSpill)
    current: SortedSpill = field(default_factory=SortedSpill)
    # a dump from before migration 0002 has no pointers: each movement's latest version is
    # current (as 0002 sets them)
    derive_current: bool = False

    def wants(self, table: Table) -> bool:
        return table.name in ("movement_library", "movement_current")

    def feed(self, table: Table, blocks: Iterator[bytes],
             line: Callable[[], int] = lambda: 0) -> None:
        """Consume ``blocks`` (whole lines of ``table``'s COPY data; ``line()`` the number of
        the block's first line). A version that is not a number as movelib writes it
        (:func:`plain_number`) raises :class:`NotANumber`."""
        columns = table.columns
        slug, version = columns.index("slug"), columns.index("version")
        digest = columns.index("content_hash") if table.name == "movement_library" else -1
        into = self.versions if digest >= 0 else self.current
        for block in blocks:
            records: list[tuple[bytes, int] | tuple[bytes, int, str]] = []
            for at, row in enumerate(block.split(b"\n")[:-1]):
                fields = row.split(b"\t")
                key = fields[slug]
                if b"\\" in key or not key.isascii():  # as the merge keys it: UTF-8, unescaped
                    key = copy_text(key).encode("utf-8")
                number = fields[version]
                if not plain_number(number):
                    raise NotANumber(table.name, key.decode("utf-8", "replace"), number,
                                     line=line() + at)
                if digest >= 0:
                    records.append((key, int(number), copy_text(fields[digest])))
                else:
                    records.append((key, int(number)))
            into.extend(records)

    def movements(self) -> Iterator[Movement]:
        """The dump's library, slug by slug in byte order (the order of the merge)."""
        current = iter(self.current)
        pointer = next(current, None)
        for key, rows in groupby(self.versions, key=lambda r: r[0]):
            versions = {version: content_hash for _, version, content_hash in rows}
            while pointer is not None and pointer[0] < key:
                pointer = next(current, None)
            now = None
            while pointer is not None and pointer[0] == key:  # the last one, as a dict kept it
                now, pointer = pointer[1], next(current, None)
            if self.derive_current:
                now = max(versions)
            yield Movement(key.decode("utf-8"), versions, now)


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


def _holds_no_library(conn: psycopg.Connection) -> bool:
    """The target has no library rows (a new database, or one without the schema)."""
    if not table_exists(conn, "movement_library"):
        return True
    row = conn.execute("SELECT NOT EXISTS (SELECT FROM movement_library)").fetchone()
    return bool(row and row[0])


def _kind(difference: Difference) -> str:
    if difference.kind == "CONFLICT":
        return "conflict"
    if difference.kind == "ONLY":
        return "removed" if difference.destination == "absent" else "added"
    if difference.kind == "VERSION":
        before, after = (int(s.removeprefix("v")) for s in (difference.source,
                                                              difference.destination))
        return "new version" if after > before else "changed"
    return "changed"


@dataclass(frozen=True)
class Preview:
    """What the restore replaces: the release (or seed) the target holds, and per kind how many
    movements change and the first :data:`SHOWN` of them."""

    replaces: str
    changes: dict[str, list[Difference]]  # per kind, the first SHOWN
    movements: tuple[int, int]  # (target, dump)
    counts: dict[str, int] = field(default_factory=dict)  # per kind, every one

    def count(self, kind: str) -> int:
        return self.counts.get(kind, 0)

    def lines(self) -> list[str]:
        lines = [f"replaces: {self.replaces}"]
        counts = ", ".join(f"{self.count(k)} {k}" + ("s" if k in ("new version", "conflict")
                                                      and self.count(k) != 1 else "")
                           for k in KINDS)
        lines.append(f"preview: {counts} (the target's {self.movements[0]} movements -> the "
                     f"dump's {self.movements[1]}, compared as `inv diff` does)")
        for kind in KINDS:
            found = self.changes.get(kind, [])
            if not found:
                continue
            listed = ", ".join(f"{shown(d.slug, 60)} ({d.source} -> {d.destination})"
                               for d in found[:SHOWN])
            more = f", ... and {self.count(kind) - SHOWN} more" if self.count(kind) > SHOWN else ""
            mark = "!!" if kind == "conflict" else "  "
            lines.append(f"{mark} {kind}: {listed}{more}")
        if self.count("conflict"):
            lines.append("!! a conflict is one published version with two contents: the target "
                         "published something else under that name and version, which this "
                         "restore replaces")
        return lines


def preview(conn: psycopg.Connection, dump: DumpLibrary,
            each: Callable[[Movement | None, Movement | None], None] | None = None) -> Preview:
    """Compare the target on ``conn`` (in the caller's read-only transaction) with ``dump``,
    both streamed slug by slug: the counts of every kind and the first few of each. ``each``
    sees every pair of the comparison too (a restore's merge plan is made in the same pass);
    it is not called when the target holds no library."""
    counts: dict[str, int] = {}
    # the first few per (kind, drift kind): listed as `inv diff` orders them, by its kind then slug
    first: dict[tuple[str, str], list[Difference]] = {}
    sides = [0, 0]
    if _holds_no_library(conn):  # every movement of the dump is added: counted, not compared
        first[("added", "ONLY")] = [d for m in islice(dump.movements(), SHOWN)
                                    for d in differ(None, m)]
        sides[1] = sum(1 for _ in groupby(dump.versions, key=itemgetter(0)))
        if sides[1]:
            counts["added"] = sides[1]
    else:
        with target_movements(conn) as here:
            for ours, theirs in merge(here, dump.movements()):
                if each is not None:
                    each(ours, theirs)
                sides[0] += ours is not None
                sides[1] += theirs is not None
                for difference in differ(ours, theirs):
                    kind = _kind(difference)
                    counts[kind] = counts.get(kind, 0) + 1
                    listed = first.setdefault((kind, difference.kind), [])
                    if len(listed) < SHOWN:
                        listed.append(difference)
    changes = {kind: [d for drift_kind in DRIFT_KINDS for d in first.get((kind, drift_kind), [])
                      ][:SHOWN] for kind in KINDS if counts.get(kind)}
    held = latest(conn)
    if isinstance(held, Provenance):
        text = held.describe()
        replaces = text.removeprefix("holds ") if text.startswith("holds ") else f"a library {text}"
    else:
        replaces = f"a library with {held}" if held == NOTHING else held
    return Preview(replaces, changes, (sides[0], sides[1]), counts)
