"""What a completed seed must leave behind, checked against the database itself."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from . import db
from .dataset import Dataset, load_movements
from .errors import SchemaNotApplied, VerificationFailed
from .publish import CHAIN
from .target import Target

MOVEMENT_TABLES = ("movement_library", "movement_current", "movement_staging", "movement_audit_log")
SHOWN_PER_CHECK = 20

# The guide's three verification queries, verbatim in meaning.
GUIDE_QUERIES = {
    "counts": "SELECT (SELECT COUNT(*) FROM movement_library) AS library, "
              "(SELECT COUNT(*) FROM movement_audit_log) AS audit;",
    "sample": "SELECT name, slug, classification FROM movement_library ORDER BY name LIMIT 5;",
    "audit": "SELECT action, COUNT(*) FROM movement_audit_log GROUP BY action ORDER BY action;",
}


@dataclass
class VerifyReport:
    target: str
    counts: dict[str, int] = field(default_factory=dict)
    audit_by_action: dict[str, int] = field(default_factory=dict)
    library_versions: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    checked_file: str | None = None

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
            "problems": self.problems,
        }

    def render(self, as_json: bool = False) -> list[str]:
        if as_json:
            return [json.dumps(self.as_dict(), indent=2, sort_keys=True)]
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        actions = ", ".join(f"{k} {v}" for k, v in self.audit_by_action.items()) or "none"
        versions = ", ".join(f"v{k} {v}" for k, v in self.library_versions.items()) or "none"
        lines = [f"verify: {'ok' if self.ok else 'FAILED'} ({counts})",
                 f"  audit by action: {actions}",
                 f"  library rows by version: {versions}"]
        if self.checked_file:
            lines.append(f"  library matches {self.checked_file}: {'no' if self.problems else 'yes'}")
        lines += [f"  problem: {p}" for p in self.problems]
        return lines

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise VerificationFailed(
                f"verification of {self.target} failed: {len(self.problems)} problem(s) "
                "(listed above)"
            )


def require_schema(conn: psycopg.Connection, target: Target) -> None:
    row = conn.execute(
        "SELECT to_regclass('movement_library') IS NOT NULL "
        "AND to_regclass('movement_audit_log') IS NOT NULL "
        "AND to_regclass('movement_staging') IS NOT NULL "
        "AND to_regclass('movement_current') IS NOT NULL"
    ).fetchone()
    if not row or not row[0]:
        raise SchemaNotApplied(
            f'relation "movement_library" does not exist on {target.describe()}: the schema '
            "is not applied.\n  run `inv migrate` first, or drop --skip-migrations "
            "(inv seed applies it), or restore a seed dump (it carries the schema)"
        )


def _rows(conn: psycopg.Connection, query: str, *params: object) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()


def check(conn: psycopg.Connection, target: Target, dataset: Dataset | None = None, *,
          extra_ok: bool = False) -> VerifyReport:
    """Inspect the movement tables through ``conn`` (read only).

    With ``dataset``, the current library must match it; ``extra_ok`` accepts current movements
    the file lacks (a seed keeps them unless told to retire them, and says so).
    """
    require_schema(conn, target)
    report = VerifyReport(target=target.masked())
    for table in MOVEMENT_TABLES:
        count = _rows(conn, f"SELECT count(*) FROM {table}")[0][0]
        report.counts[table.removeprefix("movement_")] = int(count)
    report.audit_by_action = {
        action: int(n) for action, n in _rows(
            conn, "SELECT action, count(*) FROM movement_audit_log GROUP BY action ORDER BY action"
        )
    }

    report.library_versions = {
        int(v): int(n) for v, n in _rows(
            conn, "SELECT version, count(*) FROM movement_library GROUP BY version ORDER BY version")
    }

    def add(kind: str, rows: list[tuple[Any, ...]], describe: Any) -> None:
        for row in rows[:SHOWN_PER_CHECK]:
            report.problems.append(describe(*row))
        if len(rows) > SHOWN_PER_CHECK:
            report.problems.append(f"... and {len(rows) - SHOWN_PER_CHECK} more {kind}")

    add("library rows without their published draft", _rows(conn, """
        SELECT l.slug, l.version FROM movement_library l
          LEFT JOIN movement_staging s ON s.id = l.staging_id
         WHERE s.id IS NULL OR s.status <> 'published' OR s.content_hash <> l.content_hash
         ORDER BY l.slug, l.version"""),
        lambda slug, v: f"{slug} v{v}: library row has no matching published draft in movement_staging")

    add("published drafts without a library row", _rows(conn, """
        SELECT s.slug, s.version FROM movement_staging s
         WHERE s.status = 'published'
           AND NOT EXISTS (SELECT 1 FROM movement_library l WHERE l.staging_id = s.id)
         ORDER BY s.slug, s.version"""),
        lambda slug, v: f"{slug} v{v}: draft is marked published but movement_library has no row for it")

    add("broken audit chains", _rows(conn, """
        SELECT l.slug, l.version,
               array_remove(array_agg(a.action ORDER BY a.id) FILTER (WHERE a.action <> 'RETIRED'),
                            NULL) AS chain,
               count(DISTINCT a.actor) FILTER (WHERE a.action = 'APPROVED') AS approvers,
               bool_or(a.action = 'PUBLISHED' AND a.details->>'content_hash' = l.content_hash)
                   AS publish_matches
          FROM movement_library l
          LEFT JOIN movement_audit_log a ON a.slug = l.slug AND a.version = l.version
         GROUP BY l.slug, l.version, l.content_hash
        HAVING coalesce(array_remove(array_agg(a.action ORDER BY a.id)
                                     FILTER (WHERE a.action <> 'RETIRED'), NULL), '{}')
               IS DISTINCT FROM %s::text[]
            OR count(DISTINCT a.actor) FILTER (WHERE a.action = 'APPROVED') < 2
            OR NOT coalesce(bool_or(a.action = 'PUBLISHED'
                                    AND a.details->>'content_hash' = l.content_hash), false)
         ORDER BY l.slug, l.version""", list(CHAIN)),
        lambda slug, v, chain, approvers, matches: (
            f"{slug} v{v}: audit chain is {' > '.join(chain) or 'empty'}, expected "
            f"{' > '.join(CHAIN)}" + (f"; {approvers} distinct approver(s)" if approvers < 2 else "")
            + ("" if matches else "; PUBLISHED row does not name the library content")))

    add("published audit trails without a library row", _rows(conn, """
        SELECT DISTINCT a.slug, a.version FROM movement_audit_log a
         WHERE a.action = 'PUBLISHED'
           AND NOT EXISTS (SELECT 1 FROM movement_library l
                            WHERE l.slug = a.slug AND l.version = a.version)
         ORDER BY a.slug, a.version"""),
        lambda slug, v: f"{slug} v{v}: audit log says PUBLISHED but movement_library has no row")

    add("movements whose current pointer is not their latest version", _rows(conn, """
        SELECT c.slug, c.version, (SELECT max(version) FROM movement_library l
                                    WHERE l.slug = c.slug) AS latest
          FROM movement_current c
         WHERE c.version <> (SELECT max(version) FROM movement_library l WHERE l.slug = c.slug)
         ORDER BY c.slug"""),
        lambda slug, v, latest: f"{slug}: current version is v{v} but v{latest} is published")

    add("movements with no current version that were never retired", _rows(conn, """
        SELECT l.slug, max(l.version) FROM movement_library l
         WHERE NOT EXISTS (SELECT 1 FROM movement_current c WHERE c.slug = l.slug)
         GROUP BY l.slug
        HAVING NOT EXISTS (SELECT 1 FROM movement_audit_log a
                            WHERE a.slug = l.slug AND a.version = max(l.version)
                              AND a.action = 'RETIRED')
         ORDER BY l.slug"""),
        lambda slug, v: f"{slug} v{v}: has no current version and no RETIRED audit row")

    if dataset is not None:
        report.checked_file = dataset.display_name
        _compare(conn, dataset, report, extra_ok)
    if not conn.autocommit:
        conn.rollback()
    return report


def _compare(conn: psycopg.Connection, dataset: Dataset, report: VerifyReport,
             extra_ok: bool) -> None:
    current = {
        slug: digest for slug, digest in _rows(conn, """
            SELECT slug, content_hash FROM movement_library_current""")
    }
    expected = {e.slug: e.content_hash for e in dataset.entries}
    missing = [s for s in expected if s not in current]
    extra = [] if extra_ok else sorted(s for s in current if s not in expected)
    differ = [s for s in expected if s in current and current[s] != expected[s]]
    for kind, slugs, text in (
        ("missing", missing, "is in the data file but not in the library"),
        ("different", differ, "differs between the data file and the library"),
        ("extra", extra, "is a current movement but not in the data file"),
    ):
        for slug in slugs[:SHOWN_PER_CHECK]:
            report.problems.append(f"{slug}: {text}")
        if len(slugs) > SHOWN_PER_CHECK:
            report.problems.append(f"... and {len(slugs) - SHOWN_PER_CHECK} more {kind}")


def verify(target: Target, *, data_file: Path | None = None, schema_file: Path) -> VerifyReport:
    """Open a connection to ``target`` and check it; see :func:`check`."""
    dataset = load_movements(data_file, schema_file) if data_file is not None else None
    with db.connect(target, task="verify", autocommit=True) as conn:
        try:
            return check(conn, target, dataset)
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "verification")
            raise
