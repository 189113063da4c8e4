"""``inv diff``: two movement libraries compared movement by movement, read only on both sides.

Each side is read in one READ ONLY, REPEATABLE READ transaction (rolled back), as a stream of
its library versions (slug, version, content hash recomputed from the document) and current
pointers as the server sends them (``db.stream``), in the byte order of the slugs; the two
streams are merged as they arrive, so memory stays flat whatever the libraries' sizes, and the
comparison runs on content hashes. What it finds, per movement:

* ``ONLY``: the movement exists on one side only;
* ``VERSION``: both sides have it current, at different versions;
* ``RETIRED``: current on one side, retired on the other (or retired at different versions);
* ``CONFLICT``: the same version of a movement with different content on the two sides. A
  published version is immutable, so this must never happen: two databases published
  different things under one name. It is flagged loudly, whatever else differs.

The report keeps the first differences of each kind for its text and counts them all; the
JSON document lists every one, written to a temporary file as they are found and read back
kind by kind (a million differences are not held either).
"""

from __future__ import annotations

import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain, groupby, islice
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import orjson
import psycopg

from ..base.defaults import SHOWN
from ..base.errors import ConfigError, DriftFound
from ..base.text import shown
from ..database import db
from ..database.pgservice import ENV_PREFIX
from ..database.tables import NOT_ITS_DOCUMENT, by_slug, require_content_checks, require_schema
from ..database.target import Target, target_from_dsn

if TYPE_CHECKING:
    from ..database.settings import Settings

# differences listed per kind (base.defaults.SHOWN); the totals count them all
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
        for slug in sorted(self.versions, key=_key):
            yield Movement(slug, self.versions[slug], self.current.get(slug))


def _key(slug: str) -> bytes:
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


@dataclass
class DriftReport:
    """What :func:`diff` found: per kind a count and the first :data:`SHOWN` differences; every
    difference is spilled to a temporary file per kind and read back by :meth:`differences`."""

    source: str  # masked
    destination: str  # masked
    movements: tuple[int, int] = (0, 0)  # movements (slugs) on each side
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    first: dict[str, list[Difference]] = field(default_factory=dict)  # up to SHOWN per kind
    drifted: int = 0  # movements (slugs) with at least one difference
    _spilled: dict[str, IO[bytes]] = field(default_factory=dict, repr=False)

    def add(self, found: list[Difference]) -> None:
        """The differences of one movement (the slugs come in byte order)."""
        if found:
            self.drifted += 1
        for d in found:
            self.counts[d.kind] += 1
            shown_now = self.first.setdefault(d.kind, [])
            if len(shown_now) < SHOWN:
                shown_now.append(d)
            if d.kind not in self._spilled:
                spill = self._spilled[d.kind] = tempfile.TemporaryFile(  # noqa: SIM115
                    prefix="movelib-diff-")
                weakref.finalize(self, spill.close)  # closed (and gone) with the report
            self._spilled[d.kind].write(
                orjson.dumps([d.slug, d.source, d.destination, d.detail]) + b"\n")

    def differences(self) -> Iterator[Difference]:
        """Every difference, conflicts first, then by kind and slug, read back one at a time."""
        for kind in KINDS:
            spill = self._spilled.get(kind)
            if spill is None:
                continue
            spill.flush()
            spill.seek(0)
            for line in spill:
                yield Difference(kind, *orjson.loads(line))

    @property
    def equal(self) -> bool:
        return not self.drifted

    def count(self, kind: str) -> int:
        return self.counts[kind]

    def lines(self) -> list[str]:
        lines = [f"from: {self.source} ({self.movements[0]} movements)",
                 f"to:   {self.destination} ({self.movements[1]} movements)"]
        if self.equal:
            return [*lines, "diff: equal (every movement at the same version with the same content)"]
        totals = ", ".join(f"{self.count(k)} {k.lower()}" for k in KINDS if self.count(k))
        lines.append(f"diff: DRIFT in {self.drifted} movement(s): {totals}")
        for kind in KINDS:
            lines += [d.line() for d in self.first.get(kind, [])]
            if self.count(kind) > SHOWN:
                lines.append(f"   ... and {self.count(kind) - SHOWN} more {kind.lower()}")
        if self.count("CONFLICT"):
            lines.append("!! a published version is immutable: the same version with different "
                         "content means two databases published different movements under one "
                         "name. Find out which is right before restoring either way.")
        return lines

    def document(self) -> dict[str, Any]:
        """:meth:`as_dict` with its differences as an iterator, for
        :func:`movelib.base.text.json_blocks` to write while it reads them back."""
        return {
            "equal": self.equal,
            "from": self.source,
            "to": self.destination,
            "movements": {"from": self.movements[0], "to": self.movements[1]},
            "counts": {k.lower(): self.count(k) for k in KINDS},
            "differences": (d.as_dict() for d in self.differences()),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.document(), "differences": [d.as_dict() for d in self.differences()]}

    def raise_if_drift(self) -> None:
        if not self.equal:
            conflicts = self.count("CONFLICT")
            raise DriftFound(
                f"drift between {self.source} and {self.destination}: "
                f"{self.drifted} movement(s) differ"
                + (f", {conflicts} CONFLICT(s)" if conflicts else ""))


def side(settings: Settings, value: str | None, option: str) -> Target:
    """``--from``/``--to``: a URL, a ``key=value`` DSN (``service=NAME``) or ``env:NAME``, else
    a profile's name."""
    value = (value or "").strip()
    if not value:
        raise ConfigError(f"give {option}: a profile name or a PostgreSQL URL")
    if "://" in value or "=" in value or value.startswith(ENV_PREFIX):
        return target_from_dsn(value, option)
    return settings.target(profile=value)


class StreamedSide(Iterator[Movement]):
    """One side's movements as they stream, and how to stop its query from another thread."""

    def __init__(self, movements: Iterator[Movement], cancel: Callable[[], object]) -> None:
        self.movements = movements
        self.cancel = cancel

    def __next__(self) -> Movement:
        return next(self.movements)


@contextmanager
def read_side(target: Target) -> Iterator[StreamedSide]:
    """``with read_side(target) as found:`` ``target``'s library, slug by slug in byte order,
    read in a READ ONLY transaction that is rolled back; a failure while it streams is said
    for ``target``."""
    with db.connect(target, task="diff", autocommit=True) as conn:
        try:
            with db.work(conn, read_only=True):
                require_schema(conn, target)
                require_content_checks(conn, target)
                with library_movements(conn) as found:
                    yield StreamedSide(_said_for(target, found), conn.cancel_safe)
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "the diff")
            raise


def _said_for(target: Target, found: Iterator[Movement]) -> Iterator[Movement]:
    try:
        yield from found
    except psycopg.Error as exc:  # here, not where the other side's stream is open too
        db.raise_sql_error(target, exc, "the diff")
        raise


def _started_together(*sides: StreamedSide) -> list[Iterator[Movement]]:
    """``sides``, each one's first movement asked for at the same time: each server sorts its
    library (a diff's longest wait) while the other does. If either fails, or the wait is
    interrupted (Ctrl-C), both queries are cancelled before that is said."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(len(sides), thread_name_prefix="movelib-diff")
    try:
        firsts = list(pool.map(lambda side: list(islice(side, 1)), sides))
    except BaseException:
        for side in sides:
            with suppress(psycopg.Error, OSError):  # a side already gone has nothing to stop
                side.cancel()
        raise
    finally:
        pool.shutdown()
    return [chain(first, side) for first, side in zip(firsts, sides, strict=True)]


def _hash(value: str) -> str:
    return ("the library row differs from its approved document" if value == NOT_ITS_DOCUMENT
            else f"{value[:12]}...")


def merge(source: Iterable[Movement], destination: Iterable[Movement],
          ) -> Iterator[tuple[Movement | None, Movement | None]]:
    """The two libraries side by side, slug by slug in byte order (a merge join: each side
    must come in that order, else ``RuntimeError``); ``None`` where a side lacks the slug."""
    a, b = _keyed(source), _keyed(destination)
    end: tuple[bytes, Movement | None] = (b"", None)
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


def _keyed(found: Iterable[Movement]) -> Iterator[tuple[bytes, Movement | None]]:
    """Each movement with its slug's UTF-8 (the merge's key), checked to come in order."""
    previous = None
    for movement in found:
        key = _key(movement.slug)
        if previous is not None and key <= previous:
            raise RuntimeError(f"movements out of slug order: {movement.slug!r}")
        previous = key
        yield key, movement


def differ(here: Movement | None, there: Movement | None) -> list[Difference]:
    """The differences of one movement between the two sides (a conflict first)."""
    if (here is not None and there is not None and here.current == there.current
            and here.versions == there.versions
            and NOT_ITS_DOCUMENT not in here.versions.values()):
        return []  # the same on both sides: the common case, decided without the details
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
    found.sort(key=lambda d: (KINDS.index(d.kind), _key(d.slug)))
    return found


def diff(source: Target, destination: Target) -> DriftReport:
    """Compare ``source``'s library with ``destination``'s (both read only, streamed and merged
    slug by slug: memory stays flat)."""
    report = DriftReport(source.masked(), destination.masked())
    counted = [0, 0]
    with ExitStack() as stack:
        one = stack.enter_context(read_side(source))
        other = stack.enter_context(read_side(destination))
        for here, there in merge(*_started_together(one, other)):
            counted[0] += here is not None
            counted[1] += there is not None
            report.add(differ(here, there))
    report.movements = (counted[0], counted[1])
    return report
