"""The audited publish workflow, in bulk and in one transaction.

Each movement the plan publishes is recorded by five audit rows, in this order: CREATED and
REVIEW_SUBMITTED by whoever runs the seed; APPROVED by two distinct reviewers, each recording what
it checked (the schema check and the integrity check); PUBLISHED by the runner. A new version
supersedes the current one by moving the movement_current pointer; the old row is never touched.
Every step is one set-based statement over all movements of the run: a handful of round trips
whatever the file's size.

What the database enforces on this path, and what it does not: the drafts are COPYed into
movement_staging already in their final ``published`` status (inside one transaction nobody sees
an intermediate state), so the row trigger that lets a draft move only one step at a time
(``movement_staging_transition``, which guards hand-made UPDATEs) does not run for them. What does
run is the statement trigger on movement_library, which refuses any library row whose draft is not
approved or published with the same content hash, or lacks APPROVED audit rows by two distinct
actors; the audit log is append-only and library rows immutable. The order of the five steps is
the order of the audit rows' ids, which ``inv verify`` checks for every movement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from .. import __version__
from ..base.errors import PublishedEditError
from ..database.provenance import record_seed, run_by
from ..database.tables import (
    CHAIN,
    LIST_FIELDS,
    OPTIONAL_LISTS,
    RETIRED,
    TEXT_FIELDS,
    action_literal,
    by_slug,
)
from ..source.datafile import Dataset, Progress
from .plan import BLOCKED, PUBLISH, RETIRE, Plan

SCHEMA_REVIEWER = "movelib/schema-check"
INTEGRITY_REVIEWER = "movelib/integrity-check"


# The audit chain's steps as SQL VALUES: (1, 'CREATED'), (2, 'REVIEW_SUBMITTED'), ...
_CHAIN_STEPS = ", ".join(f"({n}, {action_literal(action)})" for n, action in enumerate(CHAIN, 1))

@dataclass
class PublishResult:
    published: int = 0  # movements published (plan.of(PUBLISH) names them)
    new_versions: int = 0
    retired: Sequence[str] = field(default_factory=list)  # by slug (the plan's, not a copy)
    unchanged: int = 0
    seed_run_id: int | None = None


def publish(
    conn: psycopg.Connection,
    dataset: Dataset,
    plan: Plan,
    *,
    schema_sha256: str,
    actor: str | None = None,
    progress: Progress | None = None,
    target: str = "",
) -> PublishResult:
    """Carry out ``plan``; the caller owns the transaction and commits it.

    Raises :class:`PublishedEditError` (and writes nothing) when the plan has blocked changes
    (its advice names the target again with ``target``, e.g. `` --profile staging``).
    """
    if plan.count(BLOCKED):
        raise PublishedEditError(plan.blocked, dataset.display_name, target)
    actor = actor or run_by()
    to_publish = plan.count(PUBLISH)
    to_retire = plan.missing if plan.missing_action == RETIRE else []
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
            (dataset.display_name, dataset.sha256, len(dataset), result.unchanged,
             __version__, actor, started),
        )
        row = cur.fetchone()
        assert row is not None
        run_id = int(row[0])
        result.seed_run_id = run_id
        record_seed(conn, data_file=dataset.display_name, data_sha256=dataset.sha256,
                    run_by=actor, seed_run_id=run_id)
        params = {"run": run_id, "actor": actor, "file": dataset.display_name}
        if to_publish:
            _load_drafts(cur, dataset, plan, to_publish, run_id, progress)
            published = _workflow(cur, params, schema_sha256, progress)
            if published != to_publish:  # the publish trigger raises first: our own guard
                raise RuntimeError(f"published {published} of {to_publish} movements")
            result.published = published
            result.new_versions = plan.new_versions
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
            (result.published, result.new_versions, len(result.retired), run_id),
        )
    return result




_COPY_ESCAPES = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}


def copy_text(value: str) -> bytes:
    """``value`` as one field of COPY's text format (UTF-8; backslash, tab, newline and carriage
    return escaped)."""
    return value.translate(_COPY_ESCAPES).encode("utf-8")


def _load_drafts(cur: psycopg.Cursor, dataset: Dataset, plan: Plan, total: int,
                 run_id: int, progress: Progress | None) -> None:
    """COPY the drafts straight into movement_staging, each in its final state.

    The file is streamed again (the dataset checks it has not changed since validation), and
    only the rows of the ``total`` movements the plan publishes are sent (the plan's version
    for each record, by position), canonical JSON as the document.
    """
    versions, entries = plan.next, dataset.entries
    count = len(versions)  # a record past it: the file grew since validation (batches() says so)
    run = str(run_id).encode()
    done = 0
    with cur.copy("COPY movement_staging (slug, version, status, document, content_hash, "
                  "seed_run_id) FROM STDIN") as copy:
        for first, records, canonical in dataset.batches():
            lines = []
            for index, (record, text) in enumerate(zip(records, canonical, strict=True), first):
                version = versions[index] if index < count else 0
                if version:  # JSON has no raw tab or newline; a slug may (a laxer schema)
                    lines.append(b"\t".join((copy_text(record["slug"]), str(version).encode(),
                                             b"published", text.replace(b"\\", b"\\\\"),
                                             entries.content_hash(index).encode(), run)))
            if lines:
                copy.write(b"\n".join(lines) + b"\n")
                done += len(lines)
            if progress and done < total:
                progress("drafts", done, total)
    if progress:
        progress("drafts", total, total)


def _workflow(cur: psycopg.Cursor, params: dict[str, object], schema_sha256: str,
              progress: Progress | None) -> int:
    """Review, two approvals and publish, as three set-based statements; returns how many
    library rows were published.

    The drafts were written in their final 'published' state: inside this one transaction no
    one can see an intermediate state, and each step is recorded by its own audit row, in
    order. The library row is derived by the database from the stored draft, and the
    database still refuses a library row without two distinct approvals.
    """
    columns = (*TEXT_FIELDS, *LIST_FIELDS)
    record_type = ", ".join([*(f"{f} text" for f in TEXT_FIELDS),
                             *(f"{f} text[]" for f in LIST_FIELDS)])
    selected = ", ".join(f"coalesce(d.{f}, '{{}}')" if f in OPTIONAL_LISTS else f"d.{f}"
                         for f in columns)
    steps = [
        # Per draft, in order: CREATED and REVIEW_SUBMITTED by the runner, APPROVED by the
        # schema check, APPROVED by the integrity check (only for a draft whose document names
        # its own slug: a draft it does not approve cannot be published), PUBLISHED.
        ("audit trail", f"""
        INSERT INTO movement_audit_log (action, slug, version, actor, seed_run_id, details)
        SELECT step.action, s.slug, s.version,
               CASE step.n WHEN 3 THEN %(schema_reviewer)s
                           WHEN 4 THEN %(integrity_reviewer)s ELSE %(actor)s END,
               s.seed_run_id,
               CASE step.n
                 WHEN 1 THEN jsonb_build_object('data_file', %(file)s::text,
                                                'content_hash', s.content_hash)
                 WHEN 2 THEN jsonb_build_object('content_hash', s.content_hash)
                 WHEN 3 THEN jsonb_build_object('check', 'the record satisfies movement.schema.json',
                                                'schema_sha256', %(schema)s::text,
                                                'content_hash', s.content_hash)
                 WHEN 4 THEN jsonb_build_object('check', 'the stored draft names its own slug; '
                                                'the library row is derived from it by the '
                                                'database', 'content_hash', s.content_hash)
                 ELSE jsonb_strip_nulls(jsonb_build_object(
                          'content_hash', s.content_hash, 'library_version', s.version,
                          'supersedes', c.version))
               END
          FROM movement_staging s
          LEFT JOIN movement_current c ON c.slug = s.slug
         CROSS JOIN (VALUES {_CHAIN_STEPS}) AS step (n, action)
         WHERE s.seed_run_id = %(run)s
           AND (step.n <> 4 OR s.document->>'slug' = s.slug)
         ORDER BY s.id, step.n
        """),
        ("library", f"""
        INSERT INTO movement_library (slug, version, {", ".join(columns)},
                                      content_hash, published_by, staging_id, seed_run_id)
        SELECT s.slug, s.version, {selected}, s.content_hash, %(actor)s, s.id, %(run)s
          FROM movement_staging s, jsonb_to_record(s.document) AS d ({record_type})
         WHERE s.seed_run_id = %(run)s
         ORDER BY s.id
        """),
        ("current versions", """
        INSERT INTO movement_current (slug, version, library_id)
        SELECT l.slug, l.version, l.id FROM movement_library l WHERE l.seed_run_id = %(run)s
        ON CONFLICT (slug) DO UPDATE
           SET version = EXCLUDED.version, library_id = EXCLUDED.library_id, since = now()
        """),
    ]
    values = {**params, "schema": schema_sha256, "schema_reviewer": SCHEMA_REVIEWER,
              "integrity_reviewer": INTEGRITY_REVIEWER}
    published = 0
    for n, (name, statement) in enumerate(steps, 1):
        try:
            cur.execute(statement, values)
        except psycopg.Error as exc:
            exc.add_note(f"during the publish step: {name}")
            raise
        if name == "library":
            published = cur.rowcount
        if progress:
            progress("publish steps", n, len(steps))
    return published


RETIRE_ROWS = 10_000  # slugs COPYed at a time
RETIRE_BATCH = 50_000  # slugs retired by one statement, without TEMPORARY (about 20 MB here)


def _retire_audit(these: str) -> str:
    """The RETIRED audit row of each current movement ``these`` (a condition on ``c.slug``)
    names, in the byte order of the slugs."""
    return f"""
    INSERT INTO movement_audit_log (action, slug, version, actor, seed_run_id, details)
    SELECT {action_literal(RETIRED)}, c.slug, c.version, %(actor)s, %(run)s,
           jsonb_build_object('reason', 'not in the data file', 'data_file', %(file)s::text)
      FROM movement_current c WHERE {these}
     ORDER BY {by_slug("c.slug")}
    """


def _retire(cur: psycopg.Cursor, params: dict[str, object], slugs: Sequence[str]) -> None:
    """Retire ``slugs`` (in the byte order of their UTF-8, as the plan holds them; a million
    are never one parameter, nor a list here): an audit row each, in that order, and their
    current pointers deleted.

    They are COPYed into a temporary table that ends with the transaction, or, for a role
    without the TEMPORARY privilege (least-privilege roles may lack it), retired
    :data:`RETIRE_BATCH` at a time, each batch one array parameter: a 1M retire took 8 s
    longer so (each statement's check of its audit rows reads the drafts again)."""
    temporary = cur.execute(
        "SELECT has_database_privilege(current_database(), 'TEMPORARY')").fetchone()
    if not (temporary and temporary[0]):
        for first in range(0, len(slugs), RETIRE_BATCH):
            batch = {**params, "slugs": slugs[first:first + RETIRE_BATCH]}
            cur.execute(_retire_audit("c.slug = ANY(%(slugs)s::text[])"), batch)
            cur.execute("DELETE FROM movement_current WHERE slug = ANY(%(slugs)s::text[])", batch)
        return
    cur.execute("CREATE TEMPORARY TABLE movelib_retire (slug text PRIMARY KEY) ON COMMIT DROP")
    with cur.copy("COPY movelib_retire (slug) FROM STDIN") as copy:
        for first in range(0, len(slugs), RETIRE_ROWS):
            copy.write(b"".join(copy_text(slug) + b"\n"
                                for slug in slugs[first:first + RETIRE_ROWS]))
    cur.execute(_retire_audit("c.slug IN (SELECT slug FROM movelib_retire)"), params)
    cur.execute("DELETE FROM movement_current WHERE slug IN (SELECT slug FROM movelib_retire)")
    cur.execute("DROP TABLE movelib_retire")  # the transaction goes on: verification, commit
