"""A seed plan as Markdown, for people who review a pull request: the totals, then a table per
kind, long tables folded; every value from the data file one escaped cell. The plan itself is
computed by :mod:`movelib.seed.plan`."""

from __future__ import annotations

import re

from ..base.report import markdown_table
from ..base.text import shown
from .plan import BLOCKED, CHANGED, KEEP, MISSING, NEW, PUBLISH, RETIRED, UNCHANGED, Change, Plan

MD_ROWS = 200  # rows per table; the rest are counted (the JSON plan lists every one)
MD_FOLDED = 10  # a table longer than this is folded in <details>
MD_CELL = 120  # characters per cell
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: object, limit: int = MD_CELL) -> str:
    """A value from outside as one Markdown table cell: one line (control characters escaped,
    cut with a marker), ``| ` * _ [ ] ~ \\`` escaped, ``& < >`` as entities (no HTML gets in)."""
    text = shown(value, limit).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _table(headers: list[str], rows: list[list[str]], total: int | None = None) -> list[str]:
    """The first MD_ROWS of ``rows`` as a table, and how many of ``total`` were left out."""
    total = len(rows) if total is None else total
    lines = markdown_table(headers, rows[:MD_ROWS])
    if total > MD_ROWS:
        lines += ["", f"... and {total - MD_ROWS} more rows "
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
    # One pass; only the first MD_ROWS of each kind are kept (a million stay a few hundred).
    by_status: dict[str, list[Change]] = {s: [] for s in (NEW, CHANGED, MISSING, RETIRED, UNCHANGED)}
    counts = dict.fromkeys(by_status, 0)
    changed_rows = 0  # a changed movement has a row per field difference
    for change in plan.changes:
        counts[change.status] += 1
        changed_rows += (len(change.diff) or 1) if change.status == CHANGED else 0
        if len(by_status[change.status]) < MD_ROWS:
            by_status[change.status].append(change)
    if counts[NEW]:
        rows = [[md(c.slug), _fate(c)] for c in by_status[NEW]]
        out += _section(f"New: {counts[NEW]}", _table(["slug", "plan"], rows, counts[NEW]),
                        counts[NEW])
    if counts[CHANGED]:
        rows = []
        for c in by_status[CHANGED]:
            first = [md(c.slug), _version(c), md(_fate(c))]
            for d in c.diff or (None,):
                old, new = d.sides(MD_CELL) if d else ("", "")
                rows.append([*first, md(d.field) if d else "", md(old, 10 * MD_CELL),
                             md(new, 10 * MD_CELL)])
                first = ["", "", ""]
        out += _section(f"Changed: {counts[CHANGED]}",
                        _table(["slug", "now", "plan", "field", "old", "new"], rows, changed_rows),
                        changed_rows)
    for status, title in ((MISSING, "Missing from the data file"),
                          (RETIRED, "Retired, and back in the data file")):
        if counts[status]:
            rows = [[md(c.slug), _version(c), md(_fate(c))] for c in by_status[status]]
            out += _section(f"{title}: {counts[status]}",
                            _table(["slug", "now", "plan"], rows, counts[status]), counts[status])
    unchanged = counts[UNCHANGED]
    if unchanged:
        names = ", ".join(md(c.slug) for c in by_status[UNCHANGED])
        more = f" ... and {unchanged - MD_ROWS} more" if unchanged > MD_ROWS else ""
        out += [f"<details><summary>Unchanged: {unchanged}</summary>", "",
                names + more, "", "</details>", ""]
    return "\n".join(out).rstrip() + "\n"
