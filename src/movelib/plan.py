"""What a seed would do, movement by movement, computed without writing anything."""

from __future__ import annotations

import gc
import json
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import psycopg

from .datafile import Dataset, Entry
from .tables import table_exists
from .text import SHOWN_CHARS, shown

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
        """Totals, and every movement (unchanged ones too)."""
        return {"totals": self.totals(), "movements": [c.as_dict() for c in self.changes]}

    def lines(self) -> list[str]:
        lines = []
        for change in self.changes:
            if change.status != UNCHANGED:
                lines += [f"  {line}" for line in change.lines()]
        unchanged = [c.slug for c in self.changes if c.status == UNCHANGED]
        if unchanged:
            names = (": " + ", ".join(unchanged) if len(unchanged) <= LISTED_UNCHANGED
                     else " (--format json lists every movement)")
            lines.append(f"  UNCHANGED  {len(unchanged)} movement(s){names}")
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


def unchanged_plan(dataset: Dataset, versions: dict[str, int]) -> Plan:
    """The plan of a file whose movements are all current and unchanged (each at
    ``versions.get(slug, 1)``), known without reading the published state back."""
    collecting = gc.isenabled()
    gc.disable()  # 100k small objects and no cycles: the collector would only slow this down
    try:
        return Plan([Change(e.slug, UNCHANGED, NOTHING, versions.get(e.slug, 1), None, e)
                     for e in dataset.entries])
    finally:
        if collecting:
            gc.enable()


# -- the plan as Markdown, for people who review a pull request -----------------------------

MD_ROWS = 200  # rows per table; the rest are counted (the JSON plan lists every one)
MD_FOLDED = 10  # a table longer than this is folded in <details>
MD_CELL = 120  # characters per cell
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: object, limit: int = MD_CELL) -> str:
    """A value from outside as one Markdown table cell: one line (control characters escaped,
    cut with a marker), ``| ` * _ [ ] ~ \\`` escaped, ``& < >`` as entities (no HTML gets in)."""
    text = shown(value, limit).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows[:MD_ROWS]]
    if len(rows) > MD_ROWS:
        lines += ["", f"... and {len(rows) - MD_ROWS} more rows "
                      "(`inv seed --dry-run --format json` lists every movement)"]
    return lines


def _section(title: str, body: list[str], rows: int) -> list[str]:
    if rows > MD_FOLDED:
        return [f"<details><summary>{title}</summary>", "", *body, "", "</details>", ""]
    return [f"#### {title}", "", *body, ""]


def _fate(change: Change) -> str:
    if change.action == PUBLISH:
        return f"publish v{change.next_version}"
    if change.action == BLOCKED and change.status == RETIRED:
        return "blocked: the slug was retired (--new-versions publishes it again)"
    if change.action == BLOCKED:
        return ("blocked: published movements cannot be edited (--new-versions publishes "
                f"v{(change.current_version or 0) + 1})")
    if change.action == KEEP:
        return "kept (--retire retires it)"
    return change.action


def _version(change: Change) -> str:
    return f"v{change.current_version}" if change.current_version else ""


def markdown(plan: Plan, *, target: str, data_file: str, pending: list[str]) -> str:
    """The plan as Markdown: totals, then a table per kind (new; changed, one row per field
    difference; missing; retired), long ones folded, unchanged movements folded."""
    totals = plan.totals()
    out = [f"### Seed plan for {md(data_file)}", "",
           f"Target: {md(target, 300)}. Dry run: nothing was written.", "",
           "Pending migrations: " + (", ".join(md(m) for m in pending) + " (applied first)"
                                     if pending else "none"), ""]
    out += _table([k.replace("_", " ") for k in totals], [[str(v) for v in totals.values()]])
    out.append("")
    by_status = {s: [c for c in plan.changes if c.status == s]
                 for s in (NEW, CHANGED, MISSING, RETIRED, UNCHANGED)}
    if by_status[NEW]:
        rows = [[md(c.slug), _fate(c)] for c in by_status[NEW]]
        out += _section(f"New: {len(rows)}", _table(["slug", "plan"], rows), len(rows))
    if by_status[CHANGED]:
        rows = []
        for c in by_status[CHANGED]:
            first = [md(c.slug), _version(c), md(_fate(c))]
            for d in c.diff or (None,):
                old, new = d.sides(MD_CELL) if d else ("", "")
                rows.append([*first, md(d.field) if d else "", md(old, 10 * MD_CELL),
                             md(new, 10 * MD_CELL)])
                first = ["", "", ""]
        out += _section(f"Changed: {len(by_status[CHANGED])}",
                        _table(["slug", "now", "plan", "field", "old", "new"], rows), len(rows))
    for status, title in ((MISSING, "Missing from the data file"),
                          (RETIRED, "Retired, and back in the data file")):
        if by_status[status]:
            rows = [[md(c.slug), _version(c), md(_fate(c))] for c in by_status[status]]
            out += _section(f"{title}: {len(rows)}", _table(["slug", "now", "plan"], rows),
                            len(rows))
    unchanged = by_status[UNCHANGED]
    if unchanged:
        names = ", ".join(md(c.slug) for c in unchanged[:MD_ROWS])
        more = f" ... and {len(unchanged) - MD_ROWS} more" if len(unchanged) > MD_ROWS else ""
        out += [f"<details><summary>Unchanged: {len(unchanged)}</summary>", "",
                names + more, "", "</details>", ""]
    return "\n".join(out).rstrip() + "\n"
