"""The database's shape, in one place: which tables hold the movement library and in what
order, the audit chain a published version carries, and the small
read-only questions asked of them (does a table exist, how many rows, which environment label,
which server version)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..base.errors import SchemaNotApplied
from .target import Target

# Every movement table, parents before children: what a seed dump carries, in the order a
# restore loads them (identity columns get their sequences reset).
MOVEMENT_TABLES = (
    "movement_environment",
    "movement_seed_run",
    "movement_staging",
    "movement_audit_log",
    "movement_library",
    "movement_current",
)


def by_slug(column: str = "slug") -> str:
    """SQL ordering slugs by the bytes of their UTF-8, whatever the server's encoding (``COLLATE
    "C"`` compares the server encoding's bytes): the order Python gives ``str`` and
    :meth:`movelib.source.datafile.Entries.by_slug` the file's slugs."""
    return f"convert_to({column}, 'UTF8')"


# Where the library came from (migration 0003): it belongs to the database like its label, so
# it is not a movement table: a dump neither carries nor drops it, and it survives a restore.
PROVENANCE_TABLE = "movement_provenance"
# Whom the database trusts (migration 0005): the database's own too, never carried or dropped.
TRUST_SIGNER_TABLE = "movement_trust_signer"
TRUST_THRESHOLD_TABLE = "movement_trust_threshold"
TRUST_LOG_TABLE = "movement_trust_log"
# The tables whose row counts verification reports, in its order (as library, current, staging,
# audit_log): a seeded database has all four.
COUNTED_TABLES = ("movement_library", "movement_current", "movement_staging", "movement_audit_log")
# The audit rows of one published version, in order (RETIRED rows aside); every check of the
# audit log and the publish step that writes it spell the chain from these.
# A library row's content columns (what the projection of a document fills), and the lists a
# document may leave out (stored as an empty list): the publish step and the content checks read
# the same columns the same way.
LIST_FIELDS = ("equipment", "primary_muscles", "secondary_muscles", "instructions", "aliases",
               "coaching_cues")
TEXT_FIELDS = ("name", "classification", "level", "laterality", "force", "mechanic")
OPTIONAL_LISTS = ("aliases", "coaching_cues")
# The audit chain of a published version, in order: its actions (the audit log's ``action``).
CREATED, REVIEW_SUBMITTED, APPROVED, PUBLISHED = "CREATED", "REVIEW_SUBMITTED", "APPROVED", "PUBLISHED"
CHAIN = (CREATED, REVIEW_SUBMITTED, APPROVED, APPROVED, PUBLISHED)
RETIRED = "RETIRED"  # added to a version's chain when a seed retires it
# How many rows of each action one published version has: {"CREATED": 1, ..., "APPROVED": 2, ...}
PER_VERSION = {action: CHAIN.count(action) for action in CHAIN}
APPROVERS = PER_VERSION[APPROVED]  # distinct reviewers a version needs


def action_literal(action: str) -> str:
    """An audit action as an SQL literal (the actions are upper-case words: nothing to escape)."""
    assert action.isidentifier() and action.isupper(), action
    return f"'{action}'"
# Every library version with its row count, lowest version first.
ROWS_PER_VERSION = ("SELECT version, count(*) AS n FROM movement_library GROUP BY version "
                    "ORDER BY version")


def table_exists(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def require_schema(conn: psycopg.Connection, target: Target, hint: str = "") -> None:
    """Raise :class:`SchemaNotApplied` unless every table verification counts exists."""
    row = conn.execute(
        "SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest(%s::text[]) AS name",
        (list(COUNTED_TABLES),),
    ).fetchone()
    if not row or not row[0]:
        raise SchemaNotApplied(
            f'relation "movement_library" does not exist on {target.describe()}: the schema '
            f"is not applied.\n  {hint or 'run `inv migrate` (or `inv seed`) on it first'}, or "
            "restore a seed dump into it (it carries the schema)"
        )


def require_content_checks(conn: psycopg.Connection, target: Target) -> None:
    """Raise :class:`SchemaNotApplied` unless the database can recompute content (migration
    0004: ``movement_content_hash``, ``movement_library_content``)."""
    if not table_exists(conn, "movement_library_content"):
        raise SchemaNotApplied(
            f"{target.describe()} predates migration 0004.movement-content, which lets the "
            "database recompute each movement's content.\n  run `inv migrate` on it first")


def row_count(conn: psycopg.Connection, table: str) -> int:
    """How many rows ``table`` has (in the caller's snapshot)."""
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def current_counts(conn: psycopg.Connection, tables: list[str]) -> dict[str, int | None]:
    """Each table's row count; ``None`` for a table that does not exist."""
    return {table: row_count(conn, table) if table_exists(conn, table) else None
            for table in tables}


def rows_per_version(conn: psycopg.Connection) -> dict[int, int]:
    """Each library version's row count (:data:`ROWS_PER_VERSION`)."""
    return {int(v): int(n) for v, n in conn.execute(ROWS_PER_VERSION)}


def environment_label(conn: psycopg.Connection) -> str | None:
    """The label ``inv migrate --environment`` gave the database, if any."""
    if not table_exists(conn, "movement_environment"):
        return None
    row = conn.execute("SELECT label FROM movement_environment").fetchone()
    return str(row[0]) if row else None


def server_version(conn: psycopg.Connection) -> str:
    """The server's version number (``15.4``), without a packager's suffix (``(Debian ...)``)."""
    row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "unknown"


def lines_sha256(line: str, order: str) -> str:
    """SQL, an aggregate: the sha256 (hex) of the text ``line`` gives for each row, each ended
    by a line break, the rows in ``order``: the digests compared with a manifest or a file."""
    return (f"encode(sha256(convert_to(coalesce(string_agg({line} || E'\\n', '' ORDER BY {order}), "
            "''), 'UTF8')), 'hex')")


# A library row that is not its approved document's projection has no content hash: it stands
# for no reviewed content, so it matches nothing (a file, a release, the other side of a diff).
NOT_ITS_DOCUMENT = "not its approved document"
# Every library version with its state (current, superseded, retired), one line each, in a
# fixed order: its sha256 says "the same library" in 64 characters, on any server.
_VERSION_LINE = "slug || E'\\t' || version || E'\\t' || content_hash || E'\\t' || state"
LIBRARY_SHA256 = (f"SELECT {lines_sha256(_VERSION_LINE, f'{by_slug()}, version')} "
                  "FROM movement_library_versions")
# The same digest over each version's hash recomputed from its document (migration 0004's
# movement_library_content): what `inv verify --release` compares, never the stored hashes.
LIBRARY_CONTENT_SHA256 = (
    f"SELECT {lines_sha256(_VERSION_LINE, f'{by_slug()}, version')} FROM ("
    f"SELECT v.slug, v.version, v.state, coalesce(c.content_hash, '{NOT_ITS_DOCUMENT}') "
    "AS content_hash FROM movement_library_versions v JOIN movement_library_content c "
    "ON c.slug = v.slug AND c.version = v.version) AS v")

def library_sha256(conn: psycopg.Connection, *, recompute: bool = False) -> str:
    """The sha256 of every library version and its state (:data:`LIBRARY_SHA256`); with
    ``recompute``, of each version's hash recomputed from its document."""
    row = conn.execute(LIBRARY_CONTENT_SHA256 if recompute else LIBRARY_SHA256).fetchone()
    assert row is not None
    return str(row[0])
