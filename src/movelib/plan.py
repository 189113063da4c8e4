"""What a seed would do, movement by movement, computed without writing anything."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import psycopg

from .datafile import Dataset, Entry
from .tables import table_exists
from .text import shown

NEW, UNCHANGED, CHANGED, RETIRED, MISSING = "new", "unchanged", "changed", "retired", "missing"
PUBLISH, NOTHING, BLOCKED, RETIRE, KEEP = "publish", "nothing", "blocked", "retire", "keep"


@dataclass(frozen=True)
class FieldDiff:
    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        def show(value: Any) -> str:  # a long value is cut with a visible marker
            return "(absent)" if value is _ABSENT else shown(json.dumps(value, ensure_ascii=False))

        return f"{self.field}: {show(self.old)} -> {show(self.new)}"


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT: Any = _Absent()


@dataclass(slots=True)
class Change:
    """One movement's fate (not frozen: a plan holds one per movement and builds them fast)."""

    slug: str
    status: str  # new | unchanged | changed | retired | missing
    action: str  # publish | nothing | blocked | retire | keep
    current_version: int | None = None  # the live version (None: new or retired)
    next_version: int | None = None  # the version this run publishes
    entry: Entry | None = field(default=None, repr=False, compare=False)
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


@dataclass
class Plan:
    changes: list[Change]

    def of(self, *actions: str) -> list[Change]:
        return [c for c in self.changes if c.action in actions]

    @property
    def blocked(self) -> list[str]:
        return [c.slug for c in self.of(BLOCKED)]

    @property
    def writes_anything(self) -> bool:
        return bool(self.of(PUBLISH, RETIRE))

    def totals(self) -> dict[str, int]:
        totals = {s: 0 for s in (NEW, CHANGED, UNCHANGED, RETIRED, MISSING)}
        for change in self.changes:
            totals[change.status] += 1
        totals["to_publish"] = len(self.of(PUBLISH))
        totals["to_retire"] = len(self.of(RETIRE))
        totals["blocked"] = len(self.of(BLOCKED))
        return totals

    def as_dict(self) -> dict[str, Any]:
        return {"totals": self.totals(),
                "movements": [c.as_dict() for c in self.changes if c.status != UNCHANGED]}

    def lines(self) -> list[str]:
        lines = []
        for change in self.changes:
            if change.status != UNCHANGED:
                lines += [f"  {line}" for line in change.lines()]
        totals = self.totals()
        lines.append("totals: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in totals.items()))
        return lines


class _State(NamedTuple):
    latest: int
    current: int | None
    current_hash: str | None


def _state(conn: psycopg.Connection) -> dict[str, _State]:
    if not table_exists(conn, "movement_library"):
        return {}  # nothing published yet (the schema is not even there)
    if not table_exists(conn, "movement_current"):  # before the versions migration: latest is current
        rows = conn.execute("""
            SELECT DISTINCT ON (slug) slug, version, version, content_hash
              FROM movement_library ORDER BY slug, version DESC""").fetchall()
        return {slug: _State(latest, current, digest) for slug, latest, current, digest in rows}
    # Two JSON documents instead of 100k rows: psycopg builds a Python row per row, orjson
    # reads the whole array at once. A current pointer is its slug's latest version unless
    # the slug has older versions too, or none current (retired): those come separately.
    row = conn.execute("""
        SELECT (SELECT coalesce(json_agg(json_build_array(c.slug, c.version, l.content_hash)), '[]')
                  FROM movement_current c JOIN movement_library l ON l.id = c.library_id)::text,
               (SELECT coalesce(json_agg(json_build_array(slug, latest)), '[]')
                  FROM (SELECT l.slug, max(l.version) AS latest FROM movement_library l
                         GROUP BY l.slug
                        HAVING count(*) > 1 OR NOT EXISTS (SELECT 1 FROM movement_current c
                                                           WHERE c.slug = l.slug)) versions)::text
    """).fetchone()
    assert row is not None
    latest = dict(orjson.loads(row[1]))
    state = {slug: _State(latest.pop(slug, version), version, digest)
             for slug, version, digest in orjson.loads(row[0])}
    state.update((slug, _State(version, None, None)) for slug, version in latest.items())
    return state


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

    ``with_diffs`` adds field-level differences of changed movements (it reads their
    documents from the database and streams the file once more).
    """
    state = _state(conn)
    changes: list[Change] = []
    differing = [e.slug for e in dataset.entries
                 if e.slug in state and state[e.slug].current_hash != e.content_hash]
    old_docs = _documents(conn, differing) if with_diffs else {}
    new_docs = dataset.documents(set(differing)) if with_diffs and differing else {}
    for m in dataset.entries:
        st = state.get(m.slug)
        if st is None:
            changes.append(Change(m.slug, NEW, PUBLISH, None, 1, m))
            continue
        if st.current is not None and st.current_hash == m.content_hash:
            changes.append(Change(m.slug, UNCHANGED, NOTHING, st.current, None, m))
            continue
        status = CHANGED if st.current is not None else RETIRED
        diff = field_diff(old_docs[m.slug], new_docs[m.slug]) if with_diffs else ()
        action = PUBLISH if new_versions else BLOCKED
        changes.append(Change(m.slug, status, action, st.current,
                              st.latest + 1 if new_versions else None, m, diff))
    in_file = {e.slug for e in dataset.entries}
    for slug in sorted(s for s, st in state.items() if s not in in_file and st.current is not None):
        changes.append(Change(slug, MISSING, RETIRE if retire else KEEP, state[slug].current))
    return Plan(changes)
