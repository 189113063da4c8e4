"""The audit chain a published version carries, read in one pass over the audit log: per
(slug, version), one CREATED, one REVIEW_SUBMITTED, two APPROVED by distinct reviewers and one
PUBLISHED naming the library content, in that order (``tables.CHAIN``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from ..database.db import rows, work_mem
from ..database.tables import (
    APPROVED,
    APPROVERS,
    CHAIN,
    CREATED,
    PER_VERSION,
    PUBLISHED,
    RETIRED,
    REVIEW_SUBMITTED,
    action_literal,
)


@dataclass
class Trails:
    total: int
    by_action: dict[str, int]
    broken: list[tuple[Any, ...]]  # (slug, version) of library rows whose chain is wrong
    orphans: list[tuple[Any, ...]]  # (slug, version) said PUBLISHED without a library row


_NAMED = {"created": CREATED, "submitted": REVIEW_SUBMITTED, "approved": APPROVED,
          "published": PUBLISHED, "retired": RETIRED}


# two approvals by distinct reviewers is what min(actor) <> max(actor) below checks
assert APPROVERS == 2, "the chains' query checks two distinct approvers"

# Per (slug, version), in one pass: a chain is right when its non-RETIRED rows are exactly one
# CREATED, one REVIEW_SUBMITTED, two APPROVED (by two reviewers) and one PUBLISHED naming the
# library row's content, in that order by id. That is the chain CHAIN spells, without sorting
# half a million rows into arrays.
_TRAILS = """
WITH trail AS (
    SELECT slug, version, count(*) AS rows,
           count(*) FILTER (WHERE action = {q_created}) AS created,
           count(*) FILTER (WHERE action = {q_submitted}) AS submitted,
           count(*) FILTER (WHERE action = {q_approved}) AS approved,
           count(*) FILTER (WHERE action = {q_published}) AS published,
           count(*) FILTER (WHERE action = {q_retired}) AS retired,
           max(id) FILTER (WHERE action = {q_created}) AS created_last,
           min(id) FILTER (WHERE action = {q_submitted}) AS submitted_first,
           max(id) FILTER (WHERE action = {q_submitted}) AS submitted_last,
           min(id) FILTER (WHERE action = {q_approved}) AS approved_first,
           max(id) FILTER (WHERE action = {q_approved}) AS approved_last,
           min(id) FILTER (WHERE action = {q_published}) AS published_first,
           min(actor) FILTER (WHERE action = {q_approved}) AS first_approver,
           max(actor) FILTER (WHERE action = {q_approved}) AS last_approver,
           max(details->>'content_hash') FILTER (WHERE action = {q_published}) AS published_hash
      FROM movement_audit_log WHERE true{{scope_a}}
     GROUP BY slug, version
)
SELECT 'totals' AS kind, NULL AS slug, NULL::integer AS version,
       ARRAY[sum(created), sum(submitted), sum(approved), sum(published), sum(retired),
             sum(rows)]::bigint[] AS sums
  FROM trail
UNION ALL
SELECT CASE WHEN l.id IS NULL THEN 'orphan' ELSE 'broken' END,
       coalesce(l.slug, t.slug), coalesce(l.version, t.version), NULL
  FROM trail t
  FULL JOIN (SELECT * FROM movement_library l WHERE true{{scope_l}}) l
    ON l.slug = t.slug AND l.version = t.version
 WHERE (l.id IS NULL AND t.published > 0)
    OR (l.id IS NOT NULL
        AND (t.slug IS NULL OR t.rows - t.retired <> {rows} OR t.created <> {CREATED}
             OR t.submitted <> {REVIEW_SUBMITTED} OR t.approved <> {APPROVED}
             OR t.published <> {PUBLISHED}
             OR t.created_last > t.submitted_first OR t.submitted_last > t.approved_first
             OR t.approved_last > t.published_first
             OR t.first_approver = t.last_approver
             OR t.published_hash IS DISTINCT FROM l.content_hash))
 ORDER BY kind DESC, slug, version  -- 'totals' > 'orphan' > 'broken': the totals first
""".format(rows=len(CHAIN), **PER_VERSION, **{f"q_{k}": action_literal(v) for k, v in _NAMED.items()})
_ACTIONS = (*PER_VERSION, RETIRED)  # the order of the totals' sums


def audit_trails(conn: psycopg.Connection, scope: str = "",
                 params: dict[str, Any] | None = None) -> Trails:
    """Every audit chain of the library, or those of the slugs ``scope`` (a condition on a slug
    column named ``{slug}``, taking ``params``) allows, in one pass over the audit log."""
    query = _TRAILS.format(scope_a=scope.format(slug="slug"), scope_l=scope.format(slug="l.slug"))
    # room to group 100k trails in memory instead of sorting them through disk (~30% faster)
    with work_mem(conn, "64MB"):
        found = conn.execute(query, params).fetchall()
    sums = [int(n or 0) for n in found[0][3]]
    return Trails(
        total=sums[-1],
        by_action={action: n for action, n in sorted(zip(_ACTIONS, sums, strict=False)) if n},
        broken=[(slug, v) for kind, slug, v, _ in found[1:] if kind == "broken"],
        orphans=[(slug, v) for kind, slug, v, _ in found[1:] if kind == "orphan"],
    )


def describe_chains(conn: psycopg.Connection, keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """(slug, version, chain, distinct approvers, PUBLISHED names the content) of ``keys``."""
    if not keys:
        return []
    return rows(conn, f"""
        SELECT l.slug, l.version,
               coalesce(array_agg(a.action ORDER BY a.id)
                        FILTER (WHERE a.action IS NOT NULL
                                  AND a.action <> {action_literal(RETIRED)}), '{{}}'),
               count(DISTINCT a.actor) FILTER (WHERE a.action = {action_literal(APPROVED)}),
               coalesce(bool_or(a.action = {action_literal(PUBLISHED)}
                                AND a.details->>'content_hash' = l.content_hash), false)
          FROM movement_library l
          LEFT JOIN movement_audit_log a ON a.slug = l.slug AND a.version = l.version
         WHERE (l.slug, l.version) IN (SELECT * FROM unnest(%s::text[], %s::int[]))
         GROUP BY l.slug, l.version, l.content_hash
         ORDER BY l.slug, l.version""", [k[0] for k in keys], [k[1] for k in keys])
