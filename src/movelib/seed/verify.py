"""What a completed seed must leave behind, checked against the database itself."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg

from ..base.defaults import FileLimits
from ..base.errors import VerificationFailed
from ..base.text import shown
from ..database import db
from ..database.db import rows
from ..database.provenance import Provenance, latest
from ..database.tables import (
    APPROVERS,
    CHAIN,
    COUNTED_TABLES,
    NOT_ITS_DOCUMENT,
    RETIRED,
    action_literal,
    by_slug,
    lines_sha256,
    require_content_checks,
    require_schema,
    row_count,
    rows_per_version,
)
from ..database.target import Target
from ..source.datafile import Dataset, load_movements
from .audit_chains import audit_trails, describe_chains
from .content_checks import content_problems

SHOWN_PER_CHECK = 20

# A comparison run in verify's snapshot: (what matches, what differs). ``inv verify --release``
# passes a release's (:func:`movelib.ship.release_check.comparison`); the seed's checks know nothing
# of releases.
Compare = Callable[[psycopg.Connection], tuple[list[str], list[str]]]

# The guide's three verification queries, verbatim in meaning.
GUIDE_QUERIES = {
    "counts": "SELECT (SELECT COUNT(*) FROM movement_library) AS library, "
              "(SELECT COUNT(*) FROM movement_audit_log) AS audit;",
    "sample": "SELECT name, slug, classification FROM movement_library ORDER BY name LIMIT 5;",
    "audit": "SELECT action, COUNT(*) FROM movement_audit_log GROUP BY action ORDER BY action;",
}


# The library's invariants beside the audit chains, each the query of the rows that break it.
# ``{scope}`` restricts a query to some slugs (the merge's two halves,
# :mod:`movelib.ship.merge_check`); ``{strict}`` adds what publishing guarantees, that a library
# row's draft is its own version's, where a rule would otherwise reach from one slug to another.
DRAFTLESS = """
    SELECT l.slug, l.version FROM movement_library l
      LEFT JOIN movement_staging s ON s.id = l.staging_id
     WHERE (s.id IS NULL OR s.status <> 'published' OR s.content_hash <> l.content_hash{strict})
           {scope_l}
     ORDER BY l.slug, l.version"""
DRAFTLESS_STRICT = " OR s.slug <> l.slug OR s.version <> l.version"
UNPUBLISHED = """
    SELECT s.slug, s.version FROM movement_staging s
     WHERE s.status = 'published'
       AND NOT EXISTS (SELECT 1 FROM movement_library l WHERE l.staging_id = s.id{strict}){scope_s}
     ORDER BY s.slug, s.version"""
UNPUBLISHED_STRICT = " AND l.slug = s.slug AND l.version = s.version"
BEHIND = """
    SELECT c.slug, c.version, l.latest
      FROM movement_current c
      JOIN (SELECT slug, max(version) AS latest FROM movement_library l WHERE true{scope_l}
             GROUP BY slug) l
        ON l.slug = c.slug
     WHERE c.version <> l.latest
     ORDER BY c.slug"""
UNRETIRED = f"""
    SELECT l.slug, max(l.version) FROM movement_library l
     WHERE NOT EXISTS (SELECT 1 FROM movement_current c WHERE c.slug = l.slug){{scope_l}}
     GROUP BY l.slug
    HAVING NOT EXISTS (SELECT 1 FROM movement_audit_log a
                        WHERE a.slug = l.slug AND a.version = max(l.version)
                          AND a.action = {action_literal(RETIRED)})
     ORDER BY l.slug"""


def invariant(query: str, scope: str = "", strict: str = "") -> str:
    """``query`` (one of the invariants above) for the whole library, or restricted by
    ``scope`` (a condition on a slug column named ``{slug}``), with ``strict``'s addition."""
    return query.format(strict=strict, scope_l=scope.format(slug="l.slug"),
                        scope_s=scope.format(slug="s.slug"))


@dataclass
class VerifyReport:
    target: str
    counts: dict[str, int] = field(default_factory=dict)
    audit_by_action: dict[str, int] = field(default_factory=dict)
    library_versions: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    checked_file: str | None = None
    provenance: Provenance | str | None = None  # the latest record, or why there is none
    release: str | None = None  # --release: the version compared
    release_matches: list[str] = field(default_factory=list)
    file_differences: int = 0  # movements of the file missing or different, or extra current
    others_kept: int | None = None  # a seed: current movements not in the file, kept (accepted)
    scope: str | None = None  # a quick check: what it checked (a full check leaves it None)
    # --file: the library rows the file cannot speak for (retired movements, by slug, and
    # superseded versions), said so that a "yes" never covers them
    not_compared: tuple[int, list[str], int] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "target": self.target,
            "counts": self.counts,
            "audit_by_action": self.audit_by_action,
            "library_versions": {str(k): v for k, v in self.library_versions.items()},
            "checked_file": self.checked_file,
            "file_matches": None if self.checked_file is None else not self.file_differences,
            "others_kept": self.others_kept,
            "not_compared_with_file": None if self.not_compared is None else {
                "retired_movements": self.not_compared[0],
                "retired_first": self.not_compared[1],
                "superseded_versions": self.not_compared[2]},
            "problems": self.problems,
            "provenance": (self.provenance.as_dict() | {"summary": self.provenance.describe()}
                           if isinstance(self.provenance, Provenance)
                           else {"summary": self.provenance}),
            "release": None if self.release is None else {
                "version": self.release, "matches": self.release_matches,
                "ok": not any(p.startswith(f"release {self.release}:") for p in self.problems)},
        }

    def lines(self) -> list[str]:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        actions = ", ".join(f"{k} {v}" for k, v in self.audit_by_action.items()) or "none"
        versions = ", ".join(f"v{k} {v}" for k, v in self.library_versions.items()) or "none"
        lines = [f"verify: {'ok' if self.ok else 'FAILED'} ({counts})",
                 f"  audit by action: {actions}",
                 f"  library rows by version: {versions}"]
        if self.checked_file:
            lines.append(self._file_line(self.checked_file))
        if self.not_compared and (self.not_compared[0] or self.not_compared[2]):
            retired, first, superseded = self.not_compared
            named = ", ".join(shown(slug, 80) for slug in first)
            more = f", ... {retired - len(first)} more" if retired > len(first) else ""
            lines.append(
                f"  not compared with the file (it holds current movements only): {retired} "
                f"retired movement(s){f' ({named}{more})' if retired else ''}, {superseded} "
                "superseded version(s); `inv diff --from SOURCE` compares every version")
        if self.provenance is not None:
            held = self.provenance
            lines.append(f"  provenance: {held.describe() if isinstance(held, Provenance) else held}")
        lines += [f"  {line}" for line in self.release_matches]
        if self.scope:
            lines.append(f"  quick check: {self.scope}")
        lines += [f"  problem: {shown(p, 500)}" for p in self.problems]  # slugs from outside
        return lines

    def _file_line(self, name: str) -> str:
        """"matches" means one thing: the current movements are exactly the file's, each as in
        the file. A seed keeps current movements the file lacks, and says so instead."""
        answer = "no" if self.file_differences else "yes"
        if self.others_kept is None:
            return (f"  library matches {name} (the current movements are exactly the file's, "
                    f"each as in the file): {answer}")
        kept = (f" ({self.others_kept} other current movement(s) not in {name} are kept)"
                if self.others_kept else "")
        return f"  every movement of {name} is in the library as in {name}: {answer}{kept}"

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise VerificationFailed(
                f"verification of {self.target} failed: {len(self.problems)} problem(s) "
                "(listed above)"
            )


def check(conn: psycopg.Connection, target: Target, dataset: Dataset | None = None, *,
          extra_ok: bool = False, content: bool = True) -> VerifyReport:
    """Inspect the movement tables through ``conn`` (read only).

    With ``dataset``, the current library must match it; ``extra_ok`` accepts current movements
    the file lacks (a seed keeps them unless told to retire them, and says so).

    With ``content`` (``inv verify``), every content hash is recomputed from the documents the
    database holds, every library row compared with its approved document's projection, and
    the file compared with those recomputed hashes, never with a stored one on its own. A seed
    and a restore pass False for the rows their own transaction wrote: the database checked
    each of those rows as it was written (migration 0004's triggers, or its one-time check of
    the rows a dump from before it loaded), and a recomputation would cost them a tenth.
    """
    require_schema(conn, target)
    if content:
        require_content_checks(conn, target)
    report = VerifyReport(target=target.masked())
    trail = audit_trails(conn)  # one pass over the audit log for every audit check
    for table in COUNTED_TABLES:
        count = trail.total if table == "movement_audit_log" else row_count(conn, table)
        report.counts[table.removeprefix("movement_")] = count
    report.audit_by_action = trail.by_action

    report.library_versions = rows_per_version(conn)

    def add(kind: str, rows: list[tuple[Any, ...]], describe: Any) -> None:
        for row in rows[:SHOWN_PER_CHECK]:
            report.problems.append(describe(*row))
        if len(rows) > SHOWN_PER_CHECK:
            report.problems.append(f"... and {len(rows) - SHOWN_PER_CHECK} more {kind}")

    add("library rows without their published draft", rows(conn, invariant(DRAFTLESS)),
        lambda slug, v: f"{slug} v{v}: library row has no matching published draft in movement_staging")

    add("published drafts without a library row", rows(conn, invariant(UNPUBLISHED)),
        lambda slug, v: f"{slug} v{v}: draft is marked published but movement_library has no row for it")

    add("broken audit chains", describe_chains(conn, trail.broken[:SHOWN_PER_CHECK])
        + trail.broken[SHOWN_PER_CHECK:],
        lambda slug, v, chain=None, approvers=APPROVERS, matches=True: (
            f"{slug} v{v}: audit chain is {' > '.join(chain or ()) or 'empty'}, expected "
            f"{' > '.join(CHAIN)}"
            + (f"; {approvers} distinct approver(s)" if approvers < APPROVERS else "")
            + ("" if matches else "; PUBLISHED row does not name the library content")))

    add("published audit trails without a library row", trail.orphans,
        lambda slug, v: f"{slug} v{v}: audit log says PUBLISHED but movement_library has no row")

    add("movements whose current pointer is not their latest version",
        rows(conn, invariant(BEHIND)),
        lambda slug, v, latest: f"{slug}: current version is v{v} but v{latest} is published")

    add("movements with no current version that were never retired",
        rows(conn, invariant(UNRETIRED)),
        lambda slug, v: f"{slug} v{v}: has no current version and no RETIRED audit row")

    if content:
        content_problems(conn, add)

    if dataset is not None:
        report.checked_file = dataset.display_name
        _compare(conn, dataset, report, extra_ok, content)
    if not conn.autocommit:
        conn.rollback()
    return report


# The sha256 of the current movements' "slug<TAB>content hash" lines in byte order (an
# expression over movement_library_current; file_digest computes the same for a data file).
CURRENT_DIGEST = lines_sha256("slug || E'\\t' || content_hash", by_slug())
_CURRENT_DIGEST = f"SELECT count(*), {CURRENT_DIGEST} FROM movement_library_current"
# The same, over each current version's hash recomputed from its document (movement_library_content;
# a library row that is not its document's projection has none, so it can match no file)
_CONTENT_CURRENT = (f"(SELECT v.slug, coalesce(v.content_hash, '{NOT_ITS_DOCUMENT}') AS "
                    "content_hash FROM movement_library_content v "
                    "JOIN movement_current c ON c.library_id = v.id) AS content")
_CONTENT_DIGEST = f"SELECT count(*), {CURRENT_DIGEST} FROM {_CONTENT_CURRENT}"


def file_digest(dataset: Dataset) -> str:
    """The sha256 of the file's "slug<TAB>content hash" lines in byte order: what
    ``CURRENT_DIGEST`` gives for a library whose current movements are exactly the file's."""
    digest = hashlib.sha256()
    entries = dataset.entries
    for index in entries.by_slug():  # one line at a time
        digest.update(f"{entries.slugs[index]}\t{entries.content_hash(index)}\n".encode())
    return digest.hexdigest()


_CURRENT_BY_SLUG = f"SELECT slug, content_hash FROM movement_library_current ORDER BY {by_slug()}"
_CONTENT_BY_SLUG = f"SELECT slug, content_hash FROM {_CONTENT_CURRENT} ORDER BY {by_slug()}"
SAME, DIFFERENT = 1, 2  # a file movement's mark in _compare (0: missing from the library)


def _compare(conn: psycopg.Connection, dataset: Dataset, report: VerifyReport,
             extra_ok: bool, content: bool) -> None:
    count, digest = rows(conn, _CONTENT_DIGEST if content else _CURRENT_DIGEST)[0]
    if count == len(dataset) and digest == file_digest(dataset):  # exactly the file's
        report.others_kept = 0 if extra_ok else None
        return  # no slug by slug comparison to make
    # Slug by slug: the current movements streamed in slug order, merged with the file's.
    entries = dataset.entries
    marks = bytearray(len(entries))
    extra: list[str] = []  # the first few only; extras counts them all
    extras = 0
    with db.stream(conn, _CONTENT_BY_SLUG if content else _CURRENT_BY_SLUG) as current:
        for index, (slug, content_hash) in entries.join(current):
            if index is None:
                extras += 1
                if len(extra) <= SHOWN_PER_CHECK:
                    extra.append(slug)
            else:
                marks[index] = SAME if content_hash == entries.content_hash(index) else DIFFERENT
    if extra_ok:
        report.others_kept, extra, extras = extras, [], 0
    found = {mark: marks.count(mark) for mark in (0, DIFFERENT)}
    report.file_differences = found[0] + found[DIFFERENT] + extras
    for kind, mark, text in (
        ("missing", 0, "is in the data file but not in the library"),
        ("different", DIFFERENT, "differs between the data file and the library"),
    ):
        named = (entries.slugs[i] for i, m in enumerate(marks) if m == mark)
        _list(report, kind, [*islice(named, SHOWN_PER_CHECK)], found[mark], text)
    _list(report, "extra", extra[:SHOWN_PER_CHECK], extras,
          "is a current movement but not in the data file")


def _not_compared(conn: psycopg.Connection) -> tuple[int, list[str], int]:
    """(retired movements, the first of them by slug, superseded versions): the library rows a
    data file, which holds the current movements only, says nothing about."""
    retired = """SELECT DISTINCT l.slug FROM movement_library l
                   WHERE NOT EXISTS (SELECT FROM movement_current c WHERE c.slug = l.slug)"""
    (count,), = rows(conn, f"SELECT count(*) FROM ({retired}) AS r")
    first = [slug for slug, in rows(conn, f"SELECT slug FROM ({retired}) AS r ORDER BY "
                                          f"{by_slug()} LIMIT 5")]
    (superseded,), = rows(conn, "SELECT count(*) FROM movement_library l JOIN movement_current c "
                                "ON c.slug = l.slug AND c.library_id <> l.id")
    return int(count), first, int(superseded)


def _list(report: VerifyReport, kind: str, slugs: list[str], total: int, text: str) -> None:
    report.problems += [f"{slug}: {text}" for slug in slugs]
    if total > len(slugs):
        report.problems.append(f"... and {total - len(slugs)} more {kind}")


def verify(target: Target, *, data_file: Path | None = None, schema_file: Path,
           limits: FileLimits | None = None, release: tuple[str, Compare] | None = None,
           before_connect: Callable[[], object] | None = None) -> VerifyReport:
    """Open a connection to ``target`` and check it (see :func:`check`); report where its
    library came from, and with ``release`` (its version, and the comparison with it) compare
    it with that release, in the same snapshot.
    ``before_connect`` runs after the data file is read, before the connection (the task
    starts a stopped emulator there)."""
    dataset = (load_movements(data_file, schema_file, limits=limits)
               if data_file is not None else None)
    if before_connect is not None:
        before_connect()
    with db.connect(target, task="verify", autocommit=True) as conn:
        try:
            with db.work(conn, read_only=True):  # one snapshot, the role's limits off
                return _verify(conn, target, dataset, release)
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "verification")
            raise


def _verify(conn: psycopg.Connection, target: Target, dataset: Dataset | None,
            release: tuple[str, Compare] | None) -> VerifyReport:
    report = check(conn, target, dataset)
    if dataset is not None:
        report.not_compared = _not_compared(conn)
    report.provenance = latest(conn)
    if release is not None:
        report.release, compare = release
        report.release_matches, differs = compare(conn)
        report.problems += differs
    return report
