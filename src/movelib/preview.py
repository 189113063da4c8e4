"""What a restore would replace, shown before it asks and before it writes anything.

Computed as ``inv diff`` computes drift (:func:`movelib.drift.compare`), the target's library
against the dump's: the target's side read in the restore's read-only look at it, each version's
hash recomputed from its document; the dump's side collected from its ``movement_library`` and
``movement_current`` rows in the pass that checks every line before any connection (no extra
read of the file). The dump's stored hashes stand for its content because the database refuses,
as they load, rows whose hash is not their document's (migration 0004). Movements are counted
as the restore changes them: added, removed, changed (retired, un-retired, or an older current
version), new versions and conflicts (one version with two contents), the first few of each by
slug, and the release the target holds is named.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg

from .drift import Difference, Side, compare, library_side, side_from_json
from .dumpformat import Table
from .provenance import NOTHING, Provenance, latest
from .tables import table_exists
from .text import shown

SHOWN = 5  # slugs listed per kind
KINDS = ("added", "removed", "changed", "new version", "conflict")
_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)
_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_STORED = """
SELECT json_build_object(
  'versions', (SELECT coalesce(json_agg(json_build_array(slug, version, content_hash)), '[]')
                 FROM movement_library),
  'current', CURRENT
)::text
"""


def _unescape(match: re.Match[bytes]) -> bytes:
    octal, hexa, char = match.groups()
    if octal:
        return bytes([int(octal, 8) & 0xFF])
    if hexa:
        return bytes([int(hexa, 16)])
    return _SIMPLE.get(char, char)


def _text(raw: bytes) -> str:
    """A field of COPY's text format."""
    if b"\\" in raw:
        raw = _ESCAPE.sub(_unescape, raw)
    return raw.decode("utf-8", "replace")


@dataclass
class DumpLibrary:
    """The dump's library versions and current pointers, gathered as its rows are checked."""

    versions: dict[str, dict[int, str]] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)

    def wants(self, table: Table) -> bool:
        return table.name in ("movement_library", "movement_current")

    def feed(self, table: Table, blocks: Iterator[bytes]) -> None:
        """Consume ``blocks`` (whole lines of ``table``'s COPY data)."""
        columns = table.columns
        slug, version = columns.index("slug"), columns.index("version")
        digest = columns.index("content_hash") if table.name == "movement_library" else -1
        for block in blocks:
            for line in block.split(b"\n")[:-1]:
                fields = line.split(b"\t")
                name, number = _text(fields[slug]), int(fields[version])
                if digest >= 0:
                    self.versions.setdefault(name, {})[number] = _text(fields[digest])
                else:
                    self.current[name] = number

    def side(self, name: str) -> Side:
        return Side(name, self.versions, self.current)


def target_side(conn: psycopg.Connection, name: str) -> Side:
    """The target's library (in the caller's transaction); empty when it has none."""
    if not table_exists(conn, "movement_library"):
        return Side(name, {}, {})
    if table_exists(conn, "movement_library_content"):
        return library_side(conn, name)
    # a database before 0004: the stored hashes are all there is
    current = ("(SELECT coalesce(json_object_agg(slug, version), '{}') FROM movement_current)"
               if table_exists(conn, "movement_current") else "'{}'::json")
    row = conn.execute(_STORED.replace("CURRENT", current)).fetchone()
    assert row is not None
    return side_from_json(name, row[0])


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
    """What the restore replaces: the release (or seed) the target holds, and per kind the
    movements that change."""

    replaces: str
    changes: dict[str, list[Difference]]
    movements: tuple[int, int]  # (target, dump)

    def count(self, kind: str) -> int:
        return len(self.changes.get(kind, []))

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
            more = f", ... and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
            mark = "!!" if kind == "conflict" else "  "
            lines.append(f"{mark} {kind}: {listed}{more}")
        if self.count("conflict"):
            lines.append("!! a conflict is one published version with two contents: the target "
                         "published something else under that name and version, which this "
                         "restore replaces")
        return lines


def preview(conn: psycopg.Connection, name: str, dump: DumpLibrary) -> Preview:
    """Compare the target on ``conn`` (in the caller's read-only transaction) with ``dump``."""
    here = target_side(conn, name)
    changes: dict[str, list[Difference]] = {}
    for difference in compare(here, dump.side("the dump")):
        changes.setdefault(_kind(difference), []).append(difference)
    held = latest(conn)
    if isinstance(held, Provenance):
        text = held.describe()
        replaces = text.removeprefix("holds ") if text.startswith("holds ") else f"a library {text}"
    else:
        replaces = f"a library with {held}" if held == NOTHING else held
    return Preview(replaces, changes,
                   (len(here.versions), len(dump.versions)))
