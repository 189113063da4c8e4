"""The audited publish workflow, in bulk and in one transaction.

Each movement the plan publishes goes draft -> in_review -> approved -> published in
movement_staging and writes five audit rows: CREATED and REVIEW_SUBMITTED by whoever runs the
seed; APPROVED by two distinct reviewers, each recording what it checked (the schema check and
the integrity check); PUBLISHED by the runner. A new version supersedes the current one by moving
the movement_current pointer; the old row is never touched. Every step is one set-based
statement over all movements of the run: a handful of round trips whatever the file's size.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from . import __version__
from .dataset import Dataset
from .errors import PublishedEditError
from .plan import PUBLISH, RETIRE, Plan

SCHEMA_REVIEWER = "movelib/schema-check"
INTEGRITY_REVIEWER = "movelib/integrity-check"
CHAIN = ("CREATED", "REVIEW_SUBMITTED", "APPROVED", "APPROVED", "PUBLISHED")


def run_by() -> str:
    """Who runs the seed: ``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class PublishResult:
    published: list[tuple[str, int]] = field(default_factory=list)  # (slug, version)
    new_versions: int = 0
    retired: list[str] = field(default_factory=list)
    unchanged: int = 0
    seed_run_id: int | None = None

    @property
    def changed_anything(self) -> bool:
        return bool(self.published or self.retired)


def publish(
    conn: psycopg.Connection,
    dataset: Dataset,
    plan: Plan,
    *,
    schema_sha256: str,
    actor: str | None = None,
) -> PublishResult:
    """Carry out ``plan``; the caller owns the transaction and commits it.

    Raises :class:`PublishedEditError` (and writes nothing) when the plan has blocked changes.
    """
    if plan.blocked:
        raise PublishedEditError(plan.blocked)
    actor = actor or run_by()
    to_publish = plan.of(PUBLISH)
    to_retire = [c.slug for c in plan.of(RETIRE)]
    result = PublishResult(unchanged=plan.totals()["unchanged"])
    if not plan.writes_anything:
        return result
    started = datetime.now(UTC)
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO movement_seed_run (data_file, data_sha256, movement_count,
                                           unchanged_count, tool_version, run_by, started_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id
            """,
            (dataset.display_name, dataset.sha256, len(dataset.movements), result.unchanged,
             __version__, actor, started),
        )
        row = cur.fetchone()
        assert row is not None
        run_id = int(row[0])
        result.seed_run_id = run_id
        params = {"run": run_id, "actor": actor, "file": dataset.display_name}
        if to_publish:
            cur.execute(
                """
                CREATE TEMP TABLE movelib_incoming (
                    ord integer PRIMARY KEY,
                    slug text NOT NULL UNIQUE,
                    version integer NOT NULL,
                    document jsonb NOT NULL,
                    content_hash text NOT NULL
                ) ON COMMIT DROP
                """
            )
            with cur.copy("COPY movelib_incoming (ord, slug, version, document, content_hash) "
                          "FROM STDIN") as copy:
                for change in to_publish:
                    m = change.movement
                    assert m is not None and change.next_version is not None
                    copy.write_row((m.index, m.slug, change.next_version, m.canonical,
                                    m.content_hash))
            cur.execute("ANALYZE movelib_incoming")
            _workflow(cur, params, schema_sha256)
            cur.execute("SELECT slug, version FROM movement_library WHERE seed_run_id = %s "
                        "ORDER BY id", (run_id,))
            result.published = [(slug, int(version)) for slug, version in cur.fetchall()]
            result.new_versions = sum(1 for _, v in result.published if v > 1)
        if to_retire:
            _retire(cur, params, to_retire)
            result.retired = to_retire
        cur.execute(
            """
            UPDATE movement_seed_run
               SET published_count = %s, new_version_count = %s, retired_count = %s,
                   finished_at = clock_timestamp()
             WHERE id = %s
            """,
            (len(result.published), result.new_versions, len(result.retired), run_id),
        )
    return result


def _workflow(cur: psycopg.Cursor, params: dict[str, object], schema_sha256: str) -> None:
    cur.execute(
        """
        INSERT INTO movement_staging (slug, version, status, document, content_hash, seed_run_id)
        SELECT i.slug, i.version, 'draft', i.document, i.content_hash, %(run)s
          FROM movelib_incoming i
         ORDER BY i.ord
        """,
        params,
    )
    _audit(cur, "CREATED", "%(actor)s",
           "jsonb_build_object('data_file', %(file)s::text, 'content_hash', s.content_hash)", params)

    cur.execute(
        "UPDATE movement_staging SET status = 'in_review' WHERE seed_run_id = %(run)s", params
    )
    _audit(cur, "REVIEW_SUBMITTED", "%(actor)s",
           "jsonb_build_object('content_hash', s.content_hash)", params)

    _audit(cur, "APPROVED", "%(reviewer)s",
           "jsonb_build_object('check', 'the record satisfies movement.schema.json', "
           "'schema_sha256', %(schema)s::text, 'content_hash', s.content_hash)",
           {**params, "reviewer": SCHEMA_REVIEWER, "schema": schema_sha256})
    # The integrity reviewer approves only drafts whose stored document is the file's record
    # as read, under its own slug: a draft it does not approve cannot be published.
    _audit(cur, "APPROVED", "%(reviewer)s",
           "jsonb_build_object('check', 'stored draft equals the data file record; slug and "
           "content hash agree', 'content_hash', s.content_hash)",
           {**params, "reviewer": INTEGRITY_REVIEWER},
           join="JOIN movelib_incoming i ON i.slug = s.slug AND i.document = s.document "
                "AND i.content_hash = s.content_hash AND s.document->>'slug' = s.slug")
    cur.execute(
        "UPDATE movement_staging SET status = 'approved' WHERE seed_run_id = %(run)s", params
    )

    cur.execute(
        """
        INSERT INTO movement_library (
            slug, version, name, classification, equipment, primary_muscles,
            secondary_muscles, level, instructions, aliases, laterality, force, mechanic,
            coaching_cues, content_hash, published_by, staging_id, seed_run_id)
        SELECT s.slug, s.version, d->>'name', d->>'classification',
               movement_text_array(d->'equipment'), movement_text_array(d->'primary_muscles'),
               movement_text_array(d->'secondary_muscles'), d->>'level',
               movement_text_array(d->'instructions'), movement_text_array(d->'aliases'),
               d->>'laterality', d->>'force', d->>'mechanic',
               movement_text_array(d->'coaching_cues'),
               s.content_hash, %(actor)s, s.id, %(run)s
          FROM movement_staging s CROSS JOIN LATERAL (SELECT s.document AS d) doc
         WHERE s.seed_run_id = %(run)s
         ORDER BY s.id
        """,
        params,
    )
    _audit(cur, "PUBLISHED", "%(actor)s",
           "jsonb_strip_nulls(jsonb_build_object('content_hash', s.content_hash, "
           "'library_version', s.version, 'supersedes', c.version))",
           params, join="LEFT JOIN movement_current c ON c.slug = s.slug")
    cur.execute(
        """
        INSERT INTO movement_current (slug, version, library_id)
        SELECT l.slug, l.version, l.id FROM movement_library l WHERE l.seed_run_id = %(run)s
        ON CONFLICT (slug) DO UPDATE
           SET version = EXCLUDED.version, library_id = EXCLUDED.library_id, since = now()
        """,
        params,
    )
    cur.execute(
        "UPDATE movement_staging SET status = 'published' WHERE seed_run_id = %(run)s", params
    )


def _retire(cur: psycopg.Cursor, params: dict[str, object], slugs: list[str]) -> None:
    cur.execute(
        """
        INSERT INTO movement_audit_log (action, slug, version, actor, seed_run_id, details)
        SELECT 'RETIRED', c.slug, c.version, %(actor)s, %(run)s,
               jsonb_build_object('reason', 'not in the data file', 'data_file', %(file)s::text)
          FROM movement_current c WHERE c.slug = ANY(%(slugs)s) ORDER BY c.slug
        """,
        {**params, "slugs": slugs},
    )
    cur.execute("DELETE FROM movement_current WHERE slug = ANY(%(slugs)s)", {"slugs": slugs})


def _audit(
    cur: psycopg.Cursor,
    action: str,
    actor_sql: str,
    details_sql: str,
    params: dict[str, object],
    join: str = "",
) -> None:
    # action, actor_sql, details_sql and join are constants of this module, never input
    cur.execute(
        f"""
        INSERT INTO movement_audit_log (action, slug, version, actor, seed_run_id, details)
        SELECT '{action}', s.slug, s.version, {actor_sql}, s.seed_run_id, {details_sql}
          FROM movement_staging s {join}
         WHERE s.seed_run_id = %(run)s
         ORDER BY s.id
        """,
        params,
    )
