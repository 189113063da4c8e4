"""yoyo migrations: atomic, lock-safe, and the schema's own guarantees."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.types.json import Jsonb
from support import MIGRATION_NAMES, ROOT, table_hashes

from movelib.base.errors import MigrationError, SchemaNotApplied
from movelib.database.migrations import migrate
from movelib.database.target import Target
from movelib.source.datafile.canonical import canonical_bytes, content_hash

MIGRATIONS = ROOT / "migrations"
ALL = MIGRATION_NAMES


def test_migrate_applies_then_is_a_no_op(any_empty_db: Target) -> None:
    first = migrate(any_empty_db, MIGRATIONS)
    assert first.applied == ALL
    second = migrate(any_empty_db, MIGRATIONS)
    assert second.applied == [] and second.already == len(ALL) >= 8
    assert second.lines() == [f"migrations: up to date ({len(ALL)} applied)"]


def test_a_failing_migration_rolls_back_the_whole_run(empty_db: Target, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    (folder / "0099.broken.sql").write_text(
        "-- depends: 0003.movement-provenance\n"
        "CREATE TABLE half_done (x int);\n"
        "SELECT no_such_function();\n"
    )
    with pytest.raises(MigrationError, match=r"0099\.broken failed") as info:
        migrate(empty_db, folder)
    assert "nothing of this run was applied or recorded" in str(info.value)
    assert "no_such_function" in str(info.value)  # the server's reason stays
    with psycopg.connect(empty_db.conninfo) as conn:  # not even yoyo's tables
        assert conn.execute("SELECT to_regclass('half_done'), to_regclass('movement_library'), "
                            "to_regclass('_yoyo_migration')").fetchone() == (None, None, None)
    # fixed, the rerun just works
    (folder / "0099.broken.sql").write_text(
        "-- depends: 0003.movement-provenance\nCREATE TABLE half_done (x int);\n")
    assert migrate(empty_db, folder).applied == [*ALL, "0099.broken"]
    with psycopg.connect(empty_db.conninfo) as conn:
        logged = conn.execute("SELECT migration_id, operation FROM _yoyo_log ORDER BY created_at_utc, "
                              "migration_id").fetchall()
        assert [m for m, op in logged if op == "apply"] == [*ALL, "0099.broken"]
        assert conn.execute("SELECT version FROM _yoyo_version").fetchall() == [(2,)]


def test_yoyo_reads_what_movelib_applied(migrated_db: Target) -> None:
    """movelib writes yoyo's bookkeeping as yoyo does: yoyo's own backend finds nothing to apply."""
    from yoyo import get_backend, read_migrations

    params = migrated_db.params
    backend = get_backend(f"postgresql+psycopg://{params['user']}:{quote(params['password'], safe='')}@"
                          f"{params['host']}:{params['port']}/{params['dbname']}")
    try:
        assert list(backend.to_apply(read_migrations(str(MIGRATIONS)))) == []
    finally:
        backend.connection.close()


def test_a_non_transactional_migration_is_refused_by_name(migrated_db: Target, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    (folder / "0099.concurrently.sql").write_text(
        "-- transactional: false\n-- depends: 0003.movement-provenance\n"
        "CREATE INDEX CONCURRENTLY x ON movement_library (name);\n")
    with pytest.raises(MigrationError, match=r"0099\.concurrently says `-- transactional: false`"):
        migrate(migrated_db, folder)


HEADERS = {  # file -> text: what yoyo's directive parser must read the same way here
    "0101.plain.sql": "CREATE TABLE t1 (x int);\n",
    "0102.both.sql": "-- a comment first\n\n-- depends: 0101.plain\n-- transactional: FALSE\nSELECT 1;\n",
    "0103.crlf.sql": "-- depends: 0101.plain 0102.both\r\n-- depends: 0104.late\r\nSELECT 1;\r\n",
    "0104.late.sql": "SELECT 1;\n-- depends: 0101.plain\n",  # after SQL: not a directive
    "0105.block.sql": "/* header */\n-- depends: 0101.plain\nSELECT 1;\n",  # stops at /*
    "0106.empty.sql": "",
    "0107.only-comments.sql": "-- transactional: false\n-- nothing else\n",
    "0107.only-comments.rollback.sql": "-- depends: 0106.empty\nDROP TABLE t1;\n",
}


def test_directives_are_read_as_yoyo_reads_them(tmp_path: Path) -> None:
    """movelib reads ``-- depends:`` and ``-- transactional:`` without yoyo's sqlparse pass over
    every statement: what it finds is what yoyo's own loader finds, on the checkout's migrations
    and on files written to catch a difference."""
    from yoyo import read_migrations

    from movelib.database.migrations import read_headers

    for folder in (MIGRATIONS, tmp_path):
        if folder == tmp_path:
            for name, text in HEADERS.items():
                (tmp_path / name).write_bytes(text.encode())
        ours = read_headers(folder)
        theirs = read_migrations(str(folder))
        assert list(ours) == [m.id for m in theirs]
        for migration in theirs:
            migration.load()
            assert ours[migration.id].depends == {d.id for d in migration.depends}, migration.id
            assert ours[migration.id].transactional == migration.use_transactions, migration.id
            assert ours[migration.id].path == Path(migration.path)
    assert read_headers(tmp_path)["0103.crlf"].depends == {"0101.plain", "0102.both", "0104.late"}


@pytest.mark.parametrize(("text", "refusal"), [
    ("-- depends: 0003.movement-provenance 0042.nowhere\nSELECT 1;\n",
     r"0099\.x depends on 0042\.nowhere, which .*migrations does not hold"),
    ("-- transactional: maybe\nSELECT 1;\n", r"0099\.x says `-- transactional: maybe`"),
])
def test_a_migration_yoyo_would_not_load_is_one_clear_refusal(
        migrated_db: Target, tmp_path: Path, text: str, refusal: str) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    (folder / "0099.x.sql").write_text(text)
    with pytest.raises(MigrationError, match=refusal):
        migrate(migrated_db, folder)


def test_a_stale_yoyo_lock_row_does_not_block(migrated_db: Target) -> None:
    with psycopg.connect(migrated_db.conninfo) as conn:
        conn.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    result = migrate(migrated_db, MIGRATIONS)
    assert result.already == len(ALL)
    with psycopg.connect(migrated_db.conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM yoyo_lock").fetchone() == (0,)


def test_environment_label_is_set_only_on_purpose(migrated_db: Target) -> None:
    with psycopg.connect(migrated_db.conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM movement_environment").fetchone() == (0,)
    result = migrate(migrated_db, MIGRATIONS, environment="staging")
    assert "environment: labelled staging" in result.lines()
    assert migrate(migrated_db, MIGRATIONS, environment="staging").environment_changed is False
    with psycopg.connect(migrated_db.conninfo) as conn:
        assert conn.execute("SELECT label FROM movement_environment").fetchone() == ("staging",)


def test_an_unknown_environment_is_refused(migrated_db: Target) -> None:
    from movelib.base.errors import ConfigError

    with pytest.raises(ConfigError, match="local, staging, production"):
        migrate(migrated_db, MIGRATIONS, environment="prod")


DOCUMENT = {"slug": "x", "name": "X", "classification": "squat", "equipment": [],
            "primary_muscles": ["quadriceps"], "secondary_muscles": [], "level": "beginner",
            "instructions": ["go"]}
HASH = content_hash(canonical_bytes(DOCUMENT))


def _insert_draft(conn: psycopg.Connection, slug: str = "x") -> int:
    row = conn.execute(
        "INSERT INTO movement_staging (slug, version, document, content_hash) "
        "VALUES (%s, 1, %s, %s) RETURNING id", (slug, Jsonb(DOCUMENT), HASH)).fetchone()
    assert row is not None
    return int(row[0])


def test_drafts_move_one_workflow_step_at_a_time(migrated_db: Target) -> None:
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        draft = _insert_draft(conn)
        with pytest.raises(psycopg.errors.RaiseException, match=r"draft -> approved is not a workflow step"):
            conn.execute("UPDATE movement_staging SET status = 'approved' WHERE id = %s", (draft,))
        conn.execute("UPDATE movement_staging SET status = 'in_review' WHERE id = %s", (draft,))
        with pytest.raises(psycopg.errors.RaiseException, match="content is frozen"):
            conn.execute("UPDATE movement_staging SET document = '{\"a\": 1}' WHERE id = %s", (draft,))


def test_publishing_needs_two_distinct_approvals(migrated_db: Target) -> None:
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        draft = _insert_draft(conn)
        conn.execute("UPDATE movement_staging SET status = 'in_review' WHERE id = %s", (draft,))
        conn.execute("UPDATE movement_staging SET status = 'approved' WHERE id = %s", (draft,))
        conn.execute("INSERT INTO movement_audit_log (action, slug, version, actor) "
                     "VALUES ('APPROVED', 'x', 1, 'alice'), ('APPROVED', 'x', 1, 'alice')")
        insert = (
            "INSERT INTO movement_library (slug, version, name, classification, equipment, "
            "primary_muscles, secondary_muscles, level, instructions, content_hash, "
            "published_by, staging_id) VALUES ('x', 1, 'X', 'squat', '{}', '{quadriceps}', "
            "'{}', 'beginner', '{go}', %s, 'me', %s)"
        )
        with pytest.raises(psycopg.errors.RaiseException, match="1 distinct approval"):
            conn.execute(insert, (HASH, draft))
        conn.execute("INSERT INTO movement_audit_log (action, slug, version, actor) "
                     "VALUES ('APPROVED', 'x', 1, 'bob')")
        conn.execute(insert, (HASH, draft))


def test_audit_log_is_append_only(migrated_db: Target) -> None:
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO movement_audit_log (action, slug, version, actor) "
                     "VALUES ('CREATED', 'x', 1, 'me')")
        for statement in ("UPDATE movement_audit_log SET actor = 'you'",
                          "DELETE FROM movement_audit_log", "TRUNCATE movement_audit_log"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)


def test_skip_migrations_on_an_empty_database_says_what_to_do(empty_db: Target) -> None:
    from movelib.seed.verify import verify

    before = table_hashes(empty_db)
    with pytest.raises(SchemaNotApplied, match=r'(?s)relation "movement_library" does not exist.*inv migrate'):
        verify(empty_db, schema_file=ROOT / "schemas" / "movement.schema.json")
    assert table_hashes(empty_db) == before


YOYO_SHAPE = """
SELECT c.table_name, c.column_name, c.data_type, c.character_maximum_length, c.is_nullable,
       c.column_default,
       (SELECT string_agg(k.column_name, ',') FROM information_schema.key_column_usage k
          JOIN information_schema.table_constraints t USING (constraint_name, table_name)
         WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_name = c.table_name
           AND k.column_name = c.column_name) AS primary_key
  FROM information_schema.columns c
 WHERE c.table_schema = current_schema() AND (c.table_name LIKE '\\_yoyo%' OR c.table_name = 'yoyo_lock')
 ORDER BY c.table_name, c.ordinal_position
"""


def test_the_yoyo_tables_a_dump_carries_are_the_ones_yoyo_creates(migrated_db: Target, empty_db: Target) -> None:
    """A dump writes yoyo's bookkeeping tables itself (so a restored database needs no yoyo run):
    they must be exactly what the installed yoyo creates, and hold its schema version."""
    from yoyo import get_backend

    from movelib.database.yoyo_tables import YOYO_SCHEMA_VERSION

    params = empty_db.params  # yoyo's own backend creates its tables there
    backend = get_backend(f"postgresql+psycopg://{params['user']}:{quote(params['password'], safe='')}@"
                          f"{params['host']}:{params['port']}/{params['dbname']}")
    try:
        backend.init_database()
        backend.ensure_internal_schema_updated()
        backend.connection.commit()
    finally:
        backend.connection.close()
    with psycopg.connect(empty_db.conninfo) as conn:
        created = conn.execute(YOYO_SHAPE).fetchall()
        yoyo_versions = [str(v) for (v,) in conn.execute("SELECT version FROM _yoyo_version")]
    with psycopg.connect(migrated_db.conninfo) as conn:  # movelib wrote these (yoyo_tables.YOYO_DDL)
        written = conn.execute(YOYO_SHAPE).fetchall()
        versions = [str(v) for (v,) in conn.execute("SELECT version FROM _yoyo_version")]
    assert created and written == created
    assert versions == yoyo_versions == [str(YOYO_SCHEMA_VERSION)]


def test_movelib_spells_yoyos_migration_hash(migrated_db: Target) -> None:
    """Dumps check, and restores write, yoyo's bookkeeping without importing yoyo."""
    from yoyo.migrations import get_migration_hash

    from movelib.database.yoyo_tables import yoyo_hash

    with psycopg.connect(migrated_db.conninfo) as conn:
        recorded = conn.execute("SELECT migration_id, migration_hash FROM _yoyo_migration").fetchall()
    assert recorded and all(yoyo_hash(m) == h == get_migration_hash(m) for m, h in recorded)
