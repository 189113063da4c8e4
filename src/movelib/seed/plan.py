"""What a seed would do, movement by movement, computed without writing anything."""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..base.text import SHOWN_CHARS, shown
from ..database import db
from ..database.tables import by_slug, table_exists
from ..source.datafile import Dataset
from ..source.datafile.entries import Slugs

NEW, UNCHANGED, CHANGED, RETIRED, MISSING = "new", "unchanged", "changed", "retired", "missing"
PUBLISH, NOTHING, BLOCKED, RETIRE, KEEP = "publish", "nothing", "blocked", "retire", "keep"
LISTED_UNCHANGED = 10  # text: unchanged movements named up to this many, else only counted
CONTEXT = 40  # characters shown before the first difference of a long value


@dataclass(frozen=True)
class FieldDiff:
    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        old, new = self.sides()
        return f"{self.field}: {old} -> {new}"

    def sides(self, limit: int = SHOWN_CHARS) -> tuple[str, str]:
        """Both values as shown: a long value is cut with a visible marker, around where the two
        differ, so two long values that start (or end) alike still show their difference. Two
        long lists show their sizes and their first differing element."""
        old, new = self.old, self.new
        if isinstance(old, list) and isinstance(new, list):
            at = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
                      min(len(old), len(new)))
            if len(_json(old)) > limit or len(_json(new)) > limit:
                return _element(old, at, limit), _element(new, at, limit)
        texts = ["(absent)" if v is _ABSENT else _json(v) for v in (old, new)]
        at = next((i for i, (a, b) in enumerate(zip(*texts, strict=False)) if a != b),
                  min(map(len, texts)))
        return _around(texts[0], at, limit), _around(texts[1], at, limit)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _around(text: str, at: int, limit: int) -> str:
    """``text`` cut to ``limit`` characters so that character ``at`` (the first difference) shows."""
    if len(text) <= limit or at < limit - CONTEXT:
        return shown(text, limit)
    start = at - CONTEXT
    return f"[{start} characters]..." + shown(text[start:], limit)


def _element(items: list[Any], at: int, limit: int) -> str:
    shown_item = shown(_json(items[at]), limit) if at < len(items) else "(none)"
    return f"({len(items)} items) [{at}] {shown_item}"


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT: Any = _Absent()


@dataclass(slots=True)
class Change:
    """One movement's fate, as a :class:`Plan` gives it back (it keeps them compactly)."""

    slug: str
    status: str  # new | unchanged | changed | retired | missing
    action: str  # publish | nothing | blocked | retire | keep
    current_version: int | None = None  # the live version (None: new or retired)
    next_version: int | None = None  # the version this run publishes
    diff: tuple[FieldDiff, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug, "status": self.status, "action": self.action,
            "current_version": self.current_version, "next_version": self.next_version,
            "diff": [{"field": d.field, "old": None if d.old is _ABSENT else d.old,
                      "new": None if d.new is _ABSENT else d.new} for d in self.diff],
        }

    def lines(self) -> list[str]:
        label = f"{self.status.upper():<10} {self.slug}"
        if self.action == PUBLISH and self.current_version:
            head = f"{label} v{self.current_version} -> v{self.next_version}"
        elif self.action == PUBLISH:
            head = f"{label} v{self.next_version}"
        elif self.action == BLOCKED and self.status == RETIRED:
            head = (f"{label}: this slug was retired; it comes back only as a new version "
                    "(--new-versions publishes it)")
        elif self.action == BLOCKED:
            head = (f"{label} v{self.current_version}: blocked (published movements cannot "
                    "be edited; --new-versions publishes a new version)")
        elif self.action == RETIRE:
            head = f"{label} v{self.current_version}: retire"
        elif self.action == KEEP:
            head = (f"{label} v{self.current_version}: not in the data file, kept "
                    "(--retire retires it)")
        else:
            head = label
        return [head, *(f"      {d}" for d in self.diff)]


# A file movement's (status, action), one byte each in Plan.kinds.
KINDS = ((NEW, PUBLISH), (UNCHANGED, NOTHING), (CHANGED, PUBLISH), (CHANGED, BLOCKED),
         (RETIRED, PUBLISH), (RETIRED, BLOCKED))
_KIND = {kind: code for code, kind in enumerate(KINDS)}


def _versions(count: int, value: int) -> array[int]:
    return array("i", [value]) * count


@dataclass
class Plan:
    """Every movement's fate, kept compactly (a few bytes a movement, so that a million fit):
    the file's movements in file order, one byte (:data:`KINDS`) and two versions each, then
    the current movements missing from the file, by slug (their slugs in one buffer, their
    versions in an array, one action for all). :attr:`changes` gives them back as
    :class:`Change` objects, one at a time."""

    slugs: Sequence[str]  # the file's slugs, in file order
    kinds: bytearray  # per file movement: its code in KINDS
    current: array[int]  # per file movement: the live version, 0 when none
    next: array[int]  # per file movement: the version this run publishes, 0 when none
    diffs: dict[int, tuple[FieldDiff, ...]] = field(default_factory=dict)  # by file index
    missing: Slugs = field(default_factory=Slugs)  # current, missing from the file, by slug
    missing_current: array[int] = field(default_factory=lambda: array("i"))  # their versions
    missing_action: str = KEEP  # what happens to every one of them: KEEP, or RETIRE (--retire)

    def add_missing(self, slug: str, current: int) -> None:
        self.missing.append(slug)
        self.missing_current.append(current)

    @property
    def absent(self) -> Iterator[Change]:
        """The current movements missing from the file, by slug, one at a time."""
        for slug, current in zip(self.missing, self.missing_current, strict=True):
            yield Change(slug, MISSING, self.missing_action, current)

    def change(self, index: int) -> Change:
        """The fate of the file's movement ``index``."""
        status, action = KINDS[self.kinds[index]]
        return Change(self.slugs[index], status, action, self.current[index] or None,
                      self.next[index] or None, self.diffs.get(index, ()))

    @property
    def changes(self) -> Iterator[Change]:
        """Every movement: the file's in file order, then the missing ones."""
        yield from map(self.change, range(len(self.kinds)))
        yield from self.absent

    def count(self, *actions: str) -> int:
        codes = [code for code, (_, action) in enumerate(KINDS) if action in actions]
        return (sum(map(self.kinds.count, codes))
                + (len(self.missing) if self.missing_action in actions else 0))

    def of(self, *actions: str) -> Iterator[Change]:
        """The movements whose action is one of ``actions``, one at a time."""
        codes = bytes(code for code, (_, action) in enumerate(KINDS) if action in actions)
        if codes:
            for index, kind in enumerate(self.kinds):
                if kind in codes:
                    yield self.change(index)
        if self.missing_action in actions:
            yield from self.absent

    @property
    def blocked(self) -> list[str]:
        return [c.slug for c in self.of(BLOCKED)]

    @property
    def new_versions(self) -> int:
        """Changed movements published as a new version of a current one."""
        return self.kinds.count(_KIND[CHANGED, PUBLISH])

    @property
    def writes_anything(self) -> bool:
        return self.count(PUBLISH, RETIRE) > 0

    def totals(self) -> dict[str, int]:
        totals = {s: 0 for s in (NEW, CHANGED, UNCHANGED, RETIRED, MISSING)}
        for code, (status, _) in enumerate(KINDS):
            totals[status] += self.kinds.count(code)
        totals[MISSING] = len(self.missing)
        totals["to_publish"] = self.count(PUBLISH)
        totals["to_retire"] = self.count(RETIRE)
        totals["blocked"] = self.count(BLOCKED)
        return totals

    def document(self) -> dict[str, Any]:
        """Totals, and every movement (unchanged ones too) as an iterator of dicts, made one at
        a time while :func:`movelib.base.text.json_blocks` writes them."""
        return {"totals": self.totals(), "movements": (c.as_dict() for c in self.changes)}

    def as_dict(self) -> dict[str, Any]:
        """:meth:`document` with every movement in a list."""
        return {**self.document(), "movements": [c.as_dict() for c in self.changes]}

    def lines(self) -> Iterator[str]:
        """The plan as text, one line at a time (a million missing movements are a million
        lines, never held together)."""
        for change in self.changes:
            if change.status != UNCHANGED:
                yield from (f"  {line}" for line in change.lines())
        unchanged = self.kinds.count(_KIND[UNCHANGED, NOTHING])
        if unchanged:
            names = (": " + ", ".join(c.slug for c in self.of(NOTHING))
                     if unchanged <= LISTED_UNCHANGED else " (--format json lists every movement)")
            yield f"  UNCHANGED  {unchanged} movement(s){names}"
        totals = self.totals()
        yield "totals: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in totals.items())


# The published state, one row per slug in byte order (the order Entries.join merges in):
# slug, its latest version, its current version (NULL: retired) and that version's hash.
_PUBLISHED = f"""
SELECT l.slug, l.latest, c.version, cl.content_hash
  FROM (SELECT slug, max(version) AS latest FROM movement_library GROUP BY slug) l
  LEFT JOIN movement_current c ON c.slug = l.slug
  LEFT JOIN movement_library cl ON cl.id = c.library_id
 ORDER BY {by_slug("l.slug")}
"""
# Before the versions migration (no movement_current), the latest version is current.
_PUBLISHED_BEFORE_VERSIONS = f"""
SELECT slug, version, version, content_hash
  FROM (SELECT DISTINCT ON (slug) slug, version, content_hash FROM movement_library
         ORDER BY slug, version DESC) latest
 ORDER BY {by_slug()}
"""


def _documents(conn: psycopg.Connection, slugs: list[str]) -> dict[str, dict[str, Any]]:
    if not slugs:
        return {}
    rows = conn.execute(
        """SELECT DISTINCT ON (l.slug) l.slug, s.document
             FROM movement_library l JOIN movement_staging s ON s.id = l.staging_id
            WHERE l.slug = ANY(%s) ORDER BY l.slug, l.version DESC""", (slugs,))
    return {slug: doc for slug, doc in rows}


def field_diff(old: dict[str, Any], new: dict[str, Any]) -> tuple[FieldDiff, ...]:
    keys = list(new) + [k for k in old if k not in new]
    return tuple(FieldDiff(k, old.get(k, _ABSENT), new.get(k, _ABSENT))
                 for k in keys if old.get(k, _ABSENT) != new.get(k, _ABSENT))


def make_plan(conn: psycopg.Connection, dataset: Dataset, *, new_versions: bool,
              retire: bool, with_diffs: bool = False) -> Plan:
    """Compare ``dataset`` with what the target has published (read only).

    The published state is streamed in slug order and merged with the file's entries: memory
    grows by a few bytes a movement, whatever the library's size. ``with_diffs`` adds
    field-level differences of changed movements (it reads their documents from the
    database and streams the file once more).
    """
    entries = dataset.entries
    count = len(entries)
    plan = Plan(entries.slugs, bytearray(count), _versions(count, 0), _versions(count, 1),
                missing_action=RETIRE if retire else KEEP)
    if not table_exists(conn, "movement_library"):
        return plan  # nothing published yet (the schema is not even there)
    query = (_PUBLISHED if table_exists(conn, "movement_current")
             else _PUBLISHED_BEFORE_VERSIONS)
    differing: list[int] = []
    with db.stream(conn, query) as rows:
        for index, (slug, latest, current, digest) in entries.join(rows):
            if index is None:
                if current is not None:
                    plan.add_missing(slug, current)
                continue
            plan.current[index] = current or 0
            if current is not None and digest == entries.content_hash(index):
                plan.kinds[index], plan.next[index] = _KIND[UNCHANGED, NOTHING], 0
                continue
            status = CHANGED if current is not None else RETIRED
            plan.kinds[index] = _KIND[status, PUBLISH if new_versions else BLOCKED]
            plan.next[index] = latest + 1 if new_versions else 0
            differing.append(index)
    if with_diffs and differing:
        slugs = [entries.slugs[index] for index in differing]
        old_docs, new_docs = _documents(conn, slugs), dataset.documents(set(slugs))
        plan.diffs = {index: field_diff(old_docs[slug], new_docs[slug])
                      for index, slug in zip(differing, slugs, strict=True)}
    return plan


# The current movements that are not at version 1, in slug order.
_NOT_V1 = f"SELECT slug, version FROM movement_current WHERE version <> 1 ORDER BY {by_slug()}"


def unchanged_plan(conn: psycopg.Connection, dataset: Dataset) -> Plan:
    """The plan of a file whose movements are all current and unchanged (as
    :func:`movelib.seed.reseed.quick_check` found), known without reading the published state
    back: only the versions that are not 1."""
    entries = dataset.entries
    count = len(entries)
    plan = Plan(entries.slugs, bytearray([_KIND[UNCHANGED, NOTHING]]) * count,
                _versions(count, 1), _versions(count, 0))
    with db.stream(conn, _NOT_V1) as rows:
        for index, (_, version) in entries.join(rows):
            if index is not None:
                plan.current[index] = version
    return plan
