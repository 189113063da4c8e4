"""What ``inv verify`` recomputes from the content the database holds (migration 0004): each
draft's hash from its document, each library row against its document's projection, each audit
row's hash against its draft's; every disagreement named with the movement and the field."""

from __future__ import annotations

from typing import Any

import psycopg

from ..base.text import shown
from ..database.db import rows
from ..database.tables import OPTIONAL_LISTS


def content_problems(conn: psycopg.Connection, add: Any) -> None:
    """The database's documents against their hashes, library rows and audit rows."""
    add("drafts whose content_hash is not their document's", rows(conn, """
        SELECT slug, version, content_hash, movement_content_hash(document)
          FROM movement_staging
         WHERE movement_content_hash(document) IS DISTINCT FROM content_hash
         ORDER BY slug, version"""),
        lambda slug, v, stored, computed: (
            f"{slug} v{v}: draft content_hash {shown(stored, 16)} is not the sha256 of its "
            f"document's canonical form ({shown(computed, 16) if computed else 'none'})"))
    differing = rows(conn, """
        SELECT l.slug, l.version, movement_projection_differs(l, s.document), to_jsonb(l),
               s.document
          FROM movement_library_content c
          JOIN movement_library l ON l.id = c.id
          JOIN movement_staging s ON s.id = c.staging_id
         WHERE c.content_hash IS NULL
         ORDER BY l.slug, l.version""")
    add("library rows that differ from their approved document", [
        (slug, v, name, row.get(name), document.get(name, [] if name in OPTIONAL_LISTS else None))
        for slug, v, fields, row, document in differing for name in fields],
        lambda slug, v, name, have, approved: (
            f"{slug} v{v}: library {name} {_value(have)} differs from its approved document "
            f"{_value(approved)}"))
    add("audit rows naming other content than their draft's", rows(conn, """
        SELECT a.slug, a.version, a.action, a.details ->> 'content_hash'
          FROM movement_audit_log a
          LEFT JOIN movement_staging s ON s.slug = a.slug AND s.version = a.version
         WHERE a.details ? 'content_hash'
           AND s.content_hash IS DISTINCT FROM a.details ->> 'content_hash'
         ORDER BY a.slug, a.version, a.id"""),
        lambda slug, v, action, named: (
            f"{slug} v{v}: audit row {action} names content_hash {shown(named, 16)}, which is "
            "not its draft's"))




def _value(value: object) -> str:
    """A field's value as a message shows it: text quoted, lists as JSON, cut and escaped."""
    import json

    if isinstance(value, str):
        return f"'{shown(value, 120)}'"
    if value is None:
        return "(absent)"
    return shown(json.dumps(value, ensure_ascii=False), 120)
