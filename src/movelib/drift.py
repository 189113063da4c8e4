"""``inv diff``: two movement libraries compared movement by movement, read only on both sides.

Each side is read in one READ ONLY, REPEATABLE READ transaction (rolled back) as one JSON
document of every library version (slug, version, content hash) and every current pointer, so
100k movements cost one round trip and one parse, and the comparison runs on content hashes.
What it finds, per movement:

* ``ONLY``: the movement exists on one side only;
* ``VERSION``: both sides have it current, at different versions;
* ``RETIRED``: current on one side, retired on the other (or retired at different versions);
* ``CONFLICT``: the same version of a movement with different content on the two sides. A
  published version is immutable, so this must never happen: two databases published
  different things under one name. It is flagged loudly, whatever else differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from . import db
from .errors import ConfigError, DriftFound
from .tables import require_content_checks, require_schema
from .target import Target, target_from_dsn
from .text import shown

if TYPE_CHECKING:
    from .settings import Settings

SHOWN = 200  # differences listed per kind; the totals count them all
KINDS = ("CONFLICT", "ONLY", "VERSION", "RETIRED")

# A library row that is not its approved document's projection has no content hash: it stands
# for no reviewed content, so it differs from whatever the other side holds, even the same row.
NOT_ITS_DOCUMENT = "not its approved document"
_LIBRARY = """
SELECT json_build_object(
  'versions', (SELECT coalesce(json_agg(json_build_array(
                        slug, version, coalesce(content_hash, 'NOT_ITS_DOCUMENT'))), '[]')
                 FROM movement_library_content),
  'current', (SELECT coalesce(json_object_agg(slug, version), '{}') FROM movement_current)
)::text
""".replace("NOT_ITS_DOCUMENT", NOT_ITS_DOCUMENT)


@dataclass(frozen=True)
class Side:
    """One library: every version's content hash, and the current version of each slug."""

    name: str  # masked
    versions: dict[str, dict[int, str]]  # slug -> version -> content hash
    current: dict[str, int]  # slug -> current version (retired slugs have none)

    def state(self, slug: str) -> str:
        """``v3``, ``retired (v3)`` or ``absent``."""
        if slug not in self.versions:
            return "absent"
        if slug in self.current:
            return f"v{self.current[slug]}"
        return f"retired (v{max(self.versions[slug])})"


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
    source: str  # masked
    destination: str  # masked
    movements: tuple[int, int] = (0, 0)  # movements (slugs) on each side
    differences: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences

    def count(self, kind: str) -> int:
        return sum(1 for d in self.differences if d.kind == kind)

    def lines(self) -> list[str]:
        lines = [f"from: {self.source} ({self.movements[0]} movements)",
                 f"to:   {self.destination} ({self.movements[1]} movements)"]
        if self.equal:
            return [*lines, "diff: equal (every movement at the same version with the same content)"]
        totals = ", ".join(f"{self.count(k)} {k.lower()}" for k in KINDS if self.count(k))
        lines.append(f"diff: DRIFT in {len({d.slug for d in self.differences})} movement(s): "
                     f"{totals}")
        for kind in KINDS:
            found = [d for d in self.differences if d.kind == kind]
            lines += [d.line() for d in found[:SHOWN]]
            if len(found) > SHOWN:
                lines.append(f"   ... and {len(found) - SHOWN} more {kind.lower()}")
        if self.count("CONFLICT"):
            lines.append("!! a published version is immutable: the same version with different "
                         "content means two databases published different movements under one "
                         "name. Find out which is right before restoring either way.")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "equal": self.equal,
            "from": self.source,
            "to": self.destination,
            "movements": {"from": self.movements[0], "to": self.movements[1]},
            "counts": {k.lower(): self.count(k) for k in KINDS},
            "differences": [d.as_dict() for d in self.differences],
        }

    def raise_if_drift(self) -> None:
        if not self.equal:
            conflicts = self.count("CONFLICT")
            raise DriftFound(
                f"drift between {self.source} and {self.destination}: "
                f"{len({d.slug for d in self.differences})} movement(s) differ"
                + (f", {conflicts} CONFLICT(s)" if conflicts else ""))


def side(settings: Settings, value: str | None, option: str) -> Target:
    """``--from``/``--to``: a URL or ``key=value`` DSN, else a profile's name."""
    value = (value or "").strip()
    if not value:
        raise ConfigError(f"give {option}: a profile name or a PostgreSQL URL")
    if "://" in value or "=" in value:
        return target_from_dsn(value, option)
    return settings.target(profile=value)


def read_side(target: Target) -> Side:
    """``target``'s library, read in a READ ONLY transaction that is rolled back."""
    with db.connect(target, task="diff", autocommit=True) as conn:
        try:
            with db.work(conn, read_only=True):
                require_schema(conn, target)
                require_content_checks(conn, target)
                return library_side(conn, target.masked())
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "the diff")
            raise


def library_side(conn: psycopg.Connection, name: str) -> Side:
    """The library on ``conn`` (in the caller's transaction), each version's hash recomputed
    from its document (migration 0004)."""
    row = conn.execute(_LIBRARY).fetchone()
    assert row is not None
    return side_from_json(name, row[0])


def side_from_json(name: str, text: str) -> Side:
    """A :class:`Side` from the document ``{"versions": [[slug, version, hash]...], "current":
    {slug: version}}`` a side's query builds."""
    data = orjson.loads(text)
    versions: dict[str, dict[int, str]] = {}
    for slug, version, content_hash in data["versions"]:
        versions.setdefault(slug, {})[version] = content_hash
    return Side(name, versions, data["current"])


def _hash(value: str) -> str:
    return ("the library row differs from its approved document" if value == NOT_ITS_DOCUMENT
            else f"{value[:12]}...")


def compare(source: Side, destination: Side) -> list[Difference]:
    """Every difference between two libraries, conflicts first, then by kind and slug."""
    found: list[Difference] = []
    a, b = source.versions, destination.versions
    for slug in sorted(a.keys() | b.keys()):
        here, there = source.state(slug), destination.state(slug)
        if slug not in a or slug not in b:
            found.append(Difference("ONLY", slug, here, there))
            continue
        clash = sorted(v for v in a[slug].keys() & b[slug].keys()
                       if a[slug][v] != b[slug][v] or NOT_ITS_DOCUMENT in (a[slug][v], b[slug][v]))
        if clash:
            found.append(Difference("CONFLICT", slug, here, there, "different content in " + ", ".join(
                f"v{v} ({_hash(a[slug][v])} vs {_hash(b[slug][v])})" for v in clash)))
        if here == there:
            continue
        retired = (slug in source.current) != (slug in destination.current)
        found.append(Difference("RETIRED" if retired or slug not in source.current else "VERSION",
                                slug, here, there))
    found.sort(key=lambda d: (KINDS.index(d.kind), d.slug))
    return found


def diff(source: Target, destination: Target) -> DriftReport:
    """Compare ``source``'s library with ``destination``'s (both read only, at once: each
    server builds its document while the other does)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="movelib-diff") as pool:
        reading = pool.submit(read_side, destination)
        one = read_side(source)
        other = reading.result()
    return DriftReport(one.name, other.name, (len(one.versions), len(other.versions)),
                       compare(one, other))
