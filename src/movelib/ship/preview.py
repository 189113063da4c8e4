"""What a restore would replace, shown before it asks and before it writes anything.

Computed as ``inv diff`` computes drift (:func:`movelib.seed.drift.differ`), the target's library
against the dump's, movement by movement (:func:`movelib.ship.comparison.side_by_side`: the
target's side streamed in the restore's look at it, each version's hash as its recomputation from
the document gives it; the dump's side collected in the pass that checks every line before any
connection), so memory stays flat however large the dump. The dump's stored hashes stand for its
content because the database refuses, as they load, rows whose hash is not their document's
(migration 0004). Movements are counted
as the restore changes them: added, removed, changed (retired, un-retired, or an older current
version), new versions and conflicts (one version with two contents), the first few of each by
slug, and the release the target holds is named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby, islice
from operator import itemgetter

import psycopg

from ..base.text import shown
from ..database.provenance import NOTHING, Provenance, latest
from ..database.tables import table_exists
from ..seed.drift import KINDS as DRIFT_KINDS
from ..seed.drift import Difference, differ
from .comparison import Invariants, Pair, Same, side_by_side
from .dumplibrary import DumpLibrary

SHOWN = 5  # slugs listed per kind
KINDS = ("added", "removed", "changed", "new version", "conflict")


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
            each: Callable[[Pair | Same], None] | None = None,
            invariants: Invariants | None = None) -> Preview:
    """Compare the target on ``conn`` (in the caller's read-only transaction) with ``dump``,
    both streamed slug by slug: the counts of every kind and the first few of each. ``each``
    sees every pair of the comparison too (a restore's merge plan is made in the same pass);
    it is not called when the target holds no library; ``invariants`` is what the comparison
    found of the target's library."""
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
        with side_by_side(conn, dump, invariants) as pairs:
            for pair in pairs:
                if each is not None:
                    each(pair)
                if isinstance(pair, Same):  # no difference to count or show
                    sides[0] += pair.movements
                    sides[1] += pair.movements
                    continue
                ours, theirs = pair
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
