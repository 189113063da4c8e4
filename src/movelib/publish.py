"""The audited publish workflow, in bulk and in one transaction.

Each new movement goes draft -> in_review -> approved -> published in movement_staging and
writes five audit rows: CREATED and REVIEW_SUBMITTED by whoever runs the seed; APPROVED by two
distinct reviewers, each recording what it checked (the schema check and the integrity check);
PUBLISHED by the runner. Every step is one set-based statement over all movements of the run:
the cost is a handful of round trips whatever the file's size.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from . import __version__
from .dataset import Dataset, Movement
from .errors import PublishedEditError

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
    published: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    seed_run_id: int | None = None

    @property
    def changed_anything(self) -> bool:
        return bool(self.published)


def _load_incoming(cur: psycopg.Cursor, movements: Sequence[Movement]) -> None:
    cur.execute(
        """
        CREATE TEMP TABLE movelib_incoming (
            ord integer PRIMARY KEY,
            slug text NOT NULL UNIQUE,
            document jsonb NOT NULL,
            content_hash text NOT NULL
        ) ON COMMIT DROP
        """
    )
    with cur.copy(
        "COPY movelib_incoming (ord, slug, document, content_hash) FROM STDIN"
    ) as copy:
        for m in movements:
            copy.write_row((m.index, m.slug, m.canonical, m.content_hash))
    cur.execute("ANALYZE movelib_incoming")


def publish(
    conn: psycopg.Connection,
    dataset: Dataset,
    *,
    schema_sha256: str,
    actor: str | None = None,
) -> PublishResult:
    """Publish what is new in ``dataset``; the caller owns the transaction and commits it.

    Raises :class:`PublishedEditError` (and writes nothing) when a movement that is already
    published differs from the file.
    """
    actor = actor or run_by()
    result = PublishResult()
    started = datetime.now(UTC)
    with conn.cursor() as cur:
        _load_incoming(cur, dataset.movements)
        cur.execute(
            """
            SELECT i.slug, i.content_hash = l.content_hash AS same
              FROM movelib_incoming i
              JOIN LATERAL (SELECT content_hash FROM movement_library l
                             WHERE l.slug = i.slug ORDER BY version DESC LIMIT 1) l ON true
             ORDER BY i.ord
            """
        )
        conflicts: list[str] = []
        for slug, same in cur.fetchall():
            (result.unchanged if same else conflicts).append(slug)
        if conflicts:
            raise PublishedEditError(conflicts)
        if len(result.unchanged) == len(dataset.movements):
            return result

        cur.execute(
            """
            INSERT INTO movement_seed_run (data_file, data_sha256, movement_count,
                                           unchanged_count, tool_version, run_by, started_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id
            """,
            (dataset.display_name, dataset.sha256, len(dataset.movements),
             len(result.unchanged), __version__, actor, started),
        )
        row = cur.fetchone()
        assert row is not None
        run_id = int(row[0])
        result.seed_run_id = run_id
        _workflow(cur, run_id, actor, schema_sha256, dataset.display_name)
        cur.execute(
            "SELECT slug FROM movement_library WHERE seed_run_id = %s ORDER BY id", (run_id,)
        )
        result.published = [r[0] for r in cur.fetchall()]
        cur.execute(
            """
            UPDATE movement_seed_run SET published_count = %s, finished_at = clock_timestamp()
             WHERE id = %s
            """,
            (len(result.published), run_id),
        )
    return result


def _workflow(
    cur: psycopg.Cursor, run_id: int, actor: str, schema_sha256: str, data_file: str
) -> None:
    params = {"run": run_id, "actor": actor}
    # draft: every movement of the file that the library does not hold yet
    cur.execute(
        """
        INSERT INTO movement_staging (slug, version, status, document, content_hash, seed_run_id)
        SELECT i.slug,
               coalesce((SELECT max(version) FROM movement_staging s WHERE s.slug = i.slug), 0) + 1,
               'draft', i.document, i.content_hash, %(run)s
          FROM movelib_incoming i
         WHERE NOT EXISTS (SELECT 1 FROM movement_library l WHERE l.slug = i.slug)
         ORDER BY i.ord
        """,
        params,
    )
    _audit(cur, "CREATED", "%(actor)s",
           "jsonb_build_object('data_file', %(file)s::text, 'content_hash', s.content_hash)",
           {**params, "file": data_file})

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
           "jsonb_build_object('content_hash', s.content_hash, 'library_version', s.version)",
           params)
    cur.execute(
        "UPDATE movement_staging SET status = 'published' WHERE seed_run_id = %(run)s", params
    )


def _audit(
    cur: psycopg.Cursor,
    action: str,
    actor_sql: str,
    details_sql: str,
    params: dict[str, object],
    join: str = "",
) -> None:
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


