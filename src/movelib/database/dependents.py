"""What others built on the movement tables, read from the catalog: the application's foreign
keys, views, policies, grants, triggers, indexes, rules and publications. A restore keeps every
one of them (it writes rows into the tables that exist) and says so in its preview; where it
would remove a movement version that another table's rows reference, it names those rows and
refuses before writing (:func:`references`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from ..base.text import shown
from .tables import (
    MOVEMENT_TABLES,
    PROVENANCE_TABLE,
    TRUST_LOG_TABLE,
    TRUST_SIGNER_TABLE,
    TRUST_THRESHOLD_TABLE,
)

# movelib's own tables: the movement tables, provenance and whom the database trusts
OWN_TABLES = (*MOVEMENT_TABLES, PROVENANCE_TABLE, TRUST_SIGNER_TABLE, TRUST_THRESHOLD_TABLE,
              TRUST_LOG_TABLE)
_CREATED = re.compile(
    rb"CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+)?(?:CONSTRAINT\s+)?"
    rb"(?:TRIGGER|INDEX|VIEW|MATERIALIZED\s+VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)",
    re.IGNORECASE)
SHOWN_ROWS = 5  # referencing rows named per foreign key


def own_objects(migrations: Sequence[tuple[str, bytes]]) -> frozenset[str]:
    """The triggers, indexes and views movelib's migrations create, by name."""
    return frozenset(m.decode() for _, text in migrations for m in _CREATED.findall(text))


@dataclass(frozen=True)
class Dependent:
    kind: str  # foreign key, view, policy, grant, row-level security, trigger, index, rule, publication
    name: str  # what it is, as a person finds it: "app_workout_item.app_workout_item_movement_fk"

    def line(self) -> str:
        return f"{self.kind} {shown(self.name, 120)}"


# Each kind of object others hang on the movement tables: (kind, query of one text column).
# %(tables)s: the movement tables that exist (oids); %(own)s: movelib's objects by name.
_QUERIES = (
    ("foreign key", """
        SELECT c.conrelid::regclass::text || '.' || c.conname || ' -> ' || c.confrelid::regclass::text
          FROM pg_constraint c
         WHERE c.contype = 'f' AND c.confrelid = ANY(%(tables)s) AND NOT c.conrelid = ANY(%(ours)s)"""),
    ("view", """
        SELECT DISTINCT v.oid::regclass::text
               || CASE v.relkind WHEN 'm' THEN ' (materialized)' ELSE '' END
          FROM pg_depend d
          JOIN pg_rewrite r ON r.oid = d.objid
          JOIN pg_class v ON v.oid = r.ev_class
         WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid = ANY(%(tables)s) AND NOT v.oid = ANY(%(tables)s)
           AND NOT v.relname = ANY(%(own)s)"""),
    ("row-level security", """
        SELECT oid::regclass::text || CASE WHEN relforcerowsecurity THEN ' (forced)' ELSE '' END
          FROM pg_class WHERE oid = ANY(%(tables)s) AND relrowsecurity"""),
    ("policy", """
        SELECT polname || ' on ' || polrelid::regclass::text
          FROM pg_policy WHERE polrelid = ANY(%(tables)s)"""),
    ("grant", """
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END || ': '
               || string_agg(DISTINCT a.privilege_type, ', ') || ' on ' || c.oid::regclass::text
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = ANY(%(tables)s) AND a.grantee <> c.relowner
         GROUP BY a.grantee, c.oid"""),
    ("trigger", """
        SELECT tgname || ' on ' || tgrelid::regclass::text
          FROM pg_trigger
         WHERE tgrelid = ANY(%(tables)s) AND NOT tgisinternal AND NOT tgname = ANY(%(own)s)"""),
    ("index", """
        SELECT i.indexrelid::regclass::text
          FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
         WHERE i.indrelid = ANY(%(tables)s) AND NOT x.relname = ANY(%(own)s)
           AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid
                                                          AND c.conrelid = i.indrelid)"""),
    ("rule", """
        SELECT r.rulename || ' on ' || r.ev_class::regclass::text
          FROM pg_rewrite r
         WHERE r.ev_class = ANY(%(tables)s) AND r.rulename <> '_RETURN'"""),
    ("publication", """
        SELECT p.pubname || ': ' || pr.prrelid::regclass::text
          FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
         WHERE pr.prrelid = ANY(%(tables)s)
        UNION ALL
        SELECT pubname || ': all tables' FROM pg_publication WHERE puballtables"""),
)


def _oids(conn: psycopg.Connection, names: Sequence[str]) -> list[int]:
    return [int(r[0]) for r in conn.execute(
        "SELECT to_regclass(n)::oid FROM unnest(%s::text[]) AS n WHERE to_regclass(n) IS NOT NULL",
        (list(names),))]


def dependents(conn: psycopg.Connection, own: frozenset[str]) -> list[Dependent]:
    """Every object others built on the movement tables, kind by kind, sorted."""
    tables = _oids(conn, MOVEMENT_TABLES)
    if not tables:
        return []
    params = {"tables": tables, "ours": _oids(conn, OWN_TABLES), "own": sorted(own)}
    found: list[Dependent] = []
    for kind, query in _QUERIES:
        found += [Dependent(kind, str(r[0])) for r in sorted(conn.execute(query, params))]
    return found


def summary(found: Sequence[Dependent]) -> str:
    """``2 foreign keys, 1 view, ...`` of ``found``."""
    counts: dict[str, int] = {}
    for d in found:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    return ", ".join(f"{n} {kind}{'s' if n != 1 and not kind.endswith('security') else ''}"
                     for kind, n in counts.items())


@dataclass(frozen=True)
class Reference:
    """Rows of another table that reference movement rows a restore would remove."""

    constraint: str
    table: str
    rows: list[str]  # "movement_id=5 -> back-squat v1", the first few
    more: bool = False  # more rows than those

    def line(self) -> str:
        listed = "; ".join(shown(r, 120) for r in self.rows)
        return f"{shown(self.table, 80)} (foreign key {shown(self.constraint, 80)}): {listed}" + (
            "; ..." if self.more else "")


def references(conn: psycopg.Connection, removed: Sequence[tuple[str, int]],
               cleared: Sequence[str] = ()) -> list[Reference]:
    """The rows of other tables that reference a movement version in ``removed`` (slug,
    version: its library row, draft or audit rows) or the current pointer of a slug in
    ``cleared``, per foreign key. Every foreign key counts, whatever its ON DELETE action:
    CASCADE or SET NULL would change the application's rows without a word. A table this role
    cannot read is named as such: what it holds cannot be checked."""
    if not removed and not cleared:
        return []
    keys = conn.execute("""
        SELECT c.conname, n.nspname, r.relname, c.confrelid::regclass::text,
               array_agg(a.attname ORDER BY k.n), array_agg(f.attname ORDER BY k.n)
          FROM pg_constraint c
          JOIN pg_class r ON r.oid = c.conrelid
          JOIN pg_namespace n ON n.oid = r.relnamespace
          CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k (key, fkey, n)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.key
          JOIN pg_attribute f ON f.attrelid = c.confrelid AND f.attnum = k.fkey
         WHERE c.contype = 'f' AND c.confrelid = ANY(%s) AND NOT c.conrelid = ANY(%s)
         GROUP BY c.oid, c.conname, n.nspname, r.relname, c.confrelid
         ORDER BY 2, 3, 1""", (_oids(conn, MOVEMENT_TABLES), _oids(conn, OWN_TABLES))).fetchall()
    slugs, versions = [k[0] for k in removed], [k[1] for k in removed]
    found: list[Reference] = []
    for name, schema, table, parent, columns, parent_columns in keys:
        if parent not in MOVEMENT_TABLES or parent == "movement_seed_run":
            continue  # a restore never removes a seed run
        where: sql.Composable = sql.SQL(
            "(m.slug, m.version) IN (SELECT * FROM unnest(%s::text[], %s::int[]))")
        params: list[object] = [slugs, versions]
        if parent == "movement_current":
            where = sql.SQL("({} OR m.slug = ANY(%s::text[]))").format(where)
            params.append(list(cleared))
        query = sql.SQL(
            "SELECT {shown}, m.slug, m.version FROM {table} r JOIN {parent} m ON ({match}) "
            "WHERE {where} LIMIT {limit}").format(
            shown=sql.SQL(" || ', ' || ").join(
                sql.SQL("{} || '=' || coalesce(r.{}::text, 'NULL')").format(
                    sql.Literal(c), sql.Identifier(c)) for c in columns),
            table=sql.Identifier(schema, table), parent=sql.Identifier(parent),
            match=sql.SQL(" AND ").join(
                sql.SQL("r.{} = m.{}").format(sql.Identifier(c), sql.Identifier(p))
                for c, p in zip(columns, parent_columns, strict=True)),
            where=where, limit=sql.Literal(SHOWN_ROWS + 1))
        label = f"{schema}.{table}"
        try:
            with conn.transaction():
                hits = conn.execute(query, params).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            found.append(Reference(name, label, ["this role cannot read it, so whether it "
                                                 "references them cannot be checked"]))
            continue
        if hits:
            found.append(Reference(name, label, [f"{r[0]} -> {r[1]} v{r[2]}"
                                                 for r in hits[:SHOWN_ROWS]],
                                   len(hits) > SHOWN_ROWS))
    return found


def checkout_own(migrations_dir: Path) -> frozenset[str]:
    """movelib's own objects, from this checkout's migration files (read as text: what they
    create is all that is asked)."""
    return own_objects([(p.stem, p.read_bytes()) for p in sorted(migrations_dir.glob("*.sql"))])
