"""Two movement libraries compared movement by movement: the comparison ``inv diff`` reports
(:mod:`movelib.seed.diff`) and a restore's preview and merge plan are made of
(:mod:`movelib.ship.preview`, :mod:`movelib.ship.merge_plan`).

Each side is a stream of its library versions (slug, version, content hash recomputed from the
document) and current pointers, in the byte order of the slugs (:func:`library_movements`); two
streams are merged as they arrive (:func:`merge`), so memory stays flat whatever the libraries'
sizes, and the comparison runs on content hashes. What it finds, per movement (:func:`differ`):

* ``ONLY``: the movement exists on one side only;
* ``VERSION``: both sides have it current, at different versions;
* ``RETIRED``: current on one side, retired on the other (or retired at different versions);
* ``CONFLICT``: the same version of a movement with different content on the two sides. A
  published version is immutable, so this must never happen: two databases published
  different things under one name. It is flagged loudly, whatever else differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from typing import Any, NamedTuple, TypeVar

import psycopg

from ..base.text import shown
from ..database import db
from ..database.tables import NOT_ITS_DOCUMENT, by_slug

KINDS = ("CONFLICT", "ONLY", "VERSION", "RETIRED")

# Every library version with its recomputed hash and its slug's current version (NULL: retired),
# in the byte order of the slugs (the order of the merge), then by version.
_LIBRARY = f"""
SELECT l.slug, l.version, coalesce(l.content_hash, '{NOT_ITS_DOCUMENT}'), c.version
  FROM movement_library_content l
  LEFT JOIN movement_current c ON c.slug = l.slug
 ORDER BY {by_slug("l.slug")}, l.version
"""


class Movement(NamedTuple):
    """One slug of a library: every version's content hash, and its current version (None:
    retired)."""

    slug: str
    versions: dict[int, str]
    current: int | None


def state(movement: Movement | None) -> str:
    """``v3``, ``retired (v3)`` or ``absent``."""
    if movement is None:
        return "absent"
    if movement.current is not None:
        return f"v{movement.current}"
    return f"retired (v{max(movement.versions)})"


def movements(rows: Iterable[tuple[Any, ...]]) -> Iterator[Movement]:
    """Rows of (slug, version, content hash, current version), grouped by slug, as
    :class:`Movement` s: one slug's rows at a time."""
    for slug, group in groupby(rows, key=lambda r: r[0]):
        versions: dict[int, str] = {}
        row: tuple[Any, ...] = ()
        for row in group:
            versions[row[1]] = row[2]
        yield Movement(slug, versions, row[3])  # the slug's current version, on each of its rows


@contextmanager
def library_movements(conn: psycopg.Connection) -> Iterator[Iterator[Movement]]:
    """``with library_movements(conn) as found:`` the library on ``conn`` (in the caller's
    transaction), slug by slug in byte order, each version's hash recomputed from its document
    (migration 0004)."""
    with db.stream(conn, _LIBRARY) as rows:
        yield movements(rows)


@dataclass(frozen=True)
class Side:
    """A library held whole (``versions``: slug -> version -> content hash; ``current``: slug ->
    current version, retired slugs have none): for :func:`compare`, in tests and small tools."""

    name: str
    versions: dict[str, dict[int, str]]
    current: dict[str, int]

    def movements(self) -> Iterator[Movement]:
        for slug in sorted(self.versions, key=slug_key):
            yield Movement(slug, self.versions[slug], self.current.get(slug))


def slug_key(slug: str) -> bytes:
    """A slug's UTF-8: the order both sides of a merge join by (the server's by_slug)."""
    return slug.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Difference:
    kind: str  # one of KINDS
    slug: str
    source: str  # the movement on the --from side: v3, retired (v3), absent
    destination: str  # on the --to side
    detail: str = ""

    def line(self) -> str:
        mark = "!! CONFLICT" if self.kind == "CONFLICT" else f"   {self.kind:<8}"
        text = f"{mark} {shown(self.slug, 80)}: {self.source} -> {self.destination}"
        return f"{text}; {self.detail}" if self.detail else text

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind.lower(), "slug": self.slug, "from": self.source,
                "to": self.destination, "detail": self.detail}


def _hash(value: str) -> str:
    return ("the library row differs from its approved document" if value == NOT_ITS_DOCUMENT
            else f"{value[:12]}...")


def merge(source: Iterable[Movement], destination: Iterable[Movement],
          ) -> Iterator[tuple[Movement | None, Movement | None]]:
    """The two libraries side by side, slug by slug in byte order (a merge join: each side
    must come in that order, else ``RuntimeError``); ``None`` where a side lacks the slug."""
    return merge_keyed(_keyed(source), _keyed(destination))


A = TypeVar("A")
B = TypeVar("B")


def merge_keyed(a: Iterator[tuple[bytes, A]], b: Iterator[tuple[bytes, B]],
                ) -> Iterator[tuple[A | None, B | None]]:
    """Two streams of (key, item), each in key order, side by side by key; ``None`` where a
    side lacks the key."""
    a, b = _ordered(a), _ordered(b)
    end: tuple[bytes, Any] = (b"", None)
    (key_a, here), (key_b, there) = next(a, end), next(b, end)
    while here is not None or there is not None:
        if there is None or (here is not None and key_a < key_b):
            yield here, None
            key_a, here = next(a, end)
        elif here is None or key_b < key_a:
            yield None, there
            key_b, there = next(b, end)
        else:
            yield here, there
            (key_a, here), (key_b, there) = next(a, end), next(b, end)


def _keyed(found: Iterable[Movement]) -> Iterator[tuple[bytes, Movement]]:
    """Each movement with its slug's UTF-8 (the merge's key)."""
    for movement in found:
        yield slug_key(movement.slug), movement


def _ordered(keyed: Iterator[tuple[bytes, A]]) -> Iterator[tuple[bytes, A]]:
    """``keyed``, checked to come in key order, each key once (else ``RuntimeError``)."""
    previous = None
    for key, item in keyed:
        if previous is not None and key <= previous:
            raise RuntimeError(f"out of slug order: {key.decode('utf-8', 'replace')!r}")
        previous = key
        yield key, item


def same(here: Movement | None, there: Movement | None) -> bool:
    """One movement the same on both sides: its versions' contents and its current version (a
    row that is not its document's projection is never the same, even as itself). The common
    case, decided without the details."""
    return (here is not None and there is not None and here.current == there.current
            and here.versions == there.versions
            and NOT_ITS_DOCUMENT not in here.versions.values())


def differ(here: Movement | None, there: Movement | None) -> list[Difference]:
    """The differences of one movement between the two sides (a conflict first)."""
    if same(here, there):
        return []
    a, b = state(here), state(there)
    if here is None or there is None:
        slug = (here or there).slug  # type: ignore[union-attr]  # one of them is there
        return [Difference("ONLY", slug, a, b)]
    found = []
    ours, theirs = here.versions, there.versions
    clash = sorted(v for v in ours.keys() & theirs.keys()
                   if ours[v] != theirs[v] or NOT_ITS_DOCUMENT in (ours[v], theirs[v]))
    if clash:
        found.append(Difference("CONFLICT", here.slug, a, b, "different content in " + ", ".join(
            f"v{v} ({_hash(ours[v])} vs {_hash(theirs[v])})" for v in clash)))
    if a != b:
        retired = (here.current is None) != (there.current is None)
        found.append(Difference("RETIRED" if retired or here.current is None else "VERSION",
                                here.slug, a, b))
    return found


def compare(source: Side, destination: Side) -> list[Difference]:
    """Every difference between two libraries held whole, conflicts first, then by kind and
    slug (what :func:`diff` finds, from streams)."""
    found = [d for pair in merge(source.movements(), destination.movements()) for d in differ(*pair)]
    found.sort(key=lambda d: (KINDS.index(d.kind), slug_key(d.slug)))
    return found


