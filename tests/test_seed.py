"""`inv seed` and `inv verify`: the main job, on PostgreSQL 18 and 15."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from support import CANONICAL, Cli, Server, scalar, seed, seed_run, settings, table_hashes

from movelib.base.errors import PublishedEditError, SchemaNotApplied, VerificationFailed
from movelib.database.target import Target
from movelib.seed.verify import verify

SETTINGS = settings()


def changed_copy(tmp_path: Path, **changes: str) -> Path:
    data = json.loads(CANONICAL.read_text(encoding="utf-8"))
    for record in data:
        if record["slug"] in changes:
            record["name"] = changes[record["slug"]]
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_fresh_seed_publishes_eight_with_forty_audit_rows(any_empty_db: Target) -> None:
    lines = seed(any_empty_db)
    assert "seed: 8 published (0 new versions), 0 unchanged, 0 retired (seed run 1)" in lines
    assert scalar(any_empty_db, "SELECT count(*) FROM movement_library") == 8
    assert scalar(any_empty_db, "SELECT count(*) FROM movement_audit_log") == 40
    assert scalar(any_empty_db, "SELECT array_agg(DISTINCT action ORDER BY action) FROM movement_audit_log") == [
        "APPROVED", "CREATED", "PUBLISHED", "REVIEW_SUBMITTED"]
    assert scalar(any_empty_db, "SELECT count(*) FROM movement_library WHERE slug = 'back-squat'") == 1
    assert scalar(any_empty_db, "SELECT array_agg(status) FILTER (WHERE status <> 'published') FROM movement_staging") is None
    run = "SELECT (movement_count, published_count, data_file) FROM movement_seed_run"
    assert scalar(any_empty_db, run) == ("8", "8", "data/movements-canonical.json")


def test_library_columns_carry_the_record(migrated_db: Target) -> None:
    seed(migrated_db)
    with psycopg.connect(migrated_db.conninfo) as conn:
        row = conn.execute(
            "SELECT name, classification, equipment, primary_muscles, level, instructions[1], "
            "aliases, laterality, coaching_cues[3] FROM movement_library WHERE slug = 'back-squat'"
        ).fetchone()
    assert row == ("Back Squat", "squat", ["barbell", "rack"], ["quadriceps", "glutes"],
                   "intermediate",
                   "Set the bar on the upper back, hands just outside the shoulders, and unrack it.",
                   ["High-Bar Squat", "Barbell Squat"], "bilateral", "Stand up fast")


def test_each_movement_has_a_four_eyes_audit_chain(migrated_db: Target) -> None:
    seed(migrated_db)
    with psycopg.connect(migrated_db.conninfo) as conn:
        rows = conn.execute(
            "SELECT action, actor, details FROM movement_audit_log WHERE slug = 'deadlift' ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows] == ["CREATED", "REVIEW_SUBMITTED", "APPROVED", "APPROVED", "PUBLISHED"]
    approvers = {r[1] for r in rows if r[0] == "APPROVED"}
    assert approvers == {"movelib/schema-check", "movelib/integrity-check"}
    assert len({r[2]["content_hash"] for r in rows}) == 1


def test_a_second_seed_changes_nothing(any_empty_db: Target) -> None:
    seed(any_empty_db)
    before = table_hashes(any_empty_db)
    lines = seed(any_empty_db)
    assert "seed: 0 published (0 new versions), 8 unchanged, 0 retired; nothing written" in lines
    assert table_hashes(any_empty_db) == before


def test_editing_a_published_movement_fails_and_writes_nothing(any_empty_db: Target, tmp_path: Path) -> None:
    seed(any_empty_db)
    before = table_hashes(any_empty_db)
    with pytest.raises(PublishedEditError) as info:
        seed(any_empty_db, changed_copy(tmp_path, **{"back-squat": "Back Squat (High Bar)"}))
    assert str(info.value).splitlines()[0] == "ERROR   back-squat :: Published movements cannot be edited"
    assert table_hashes(any_empty_db) == before


def test_one_changed_and_one_new_movement_publish_nothing(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    before = table_hashes(migrated_db)
    data = json.loads(changed_copy(tmp_path, deadlift="Dead Lift").read_text())
    data.append({**data[0], "slug": "front-squat", "name": "Front Squat"})
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PublishedEditError, match="deadlift"):
        seed(migrated_db, path)
    assert table_hashes(migrated_db) == before


def test_new_movements_are_added_to_an_existing_library(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    data = json.loads(CANONICAL.read_text())
    data.append({**data[0], "slug": "front-squat", "name": "Front Squat"})
    path = tmp_path / "more.json"
    path.write_text(json.dumps(data))
    lines = seed(migrated_db, path)
    assert "seed: 1 published (0 new versions), 8 unchanged, 0 retired (seed run 2)" in lines
    assert scalar(migrated_db, "SELECT count(*) FROM movement_audit_log") == 45


def test_sql_cannot_edit_a_published_movement(server: Server, any_empty_db: Target) -> None:
    seed(any_empty_db)
    with psycopg.connect(any_empty_db.conninfo, autocommit=True) as conn:
        for statement in ("UPDATE movement_library SET name = 'x' WHERE slug = 'back-squat'",
                          "DELETE FROM movement_library WHERE slug = 'back-squat'",
                          "TRUNCATE movement_library CASCADE"):
            with pytest.raises(psycopg.errors.RaiseException, match=r"^Published movements cannot be edited"):
                conn.execute(statement)


def test_psql_update_shows_the_message(cli: Cli, server: Server, any_empty_db: Target) -> None:
    seed(any_empty_db)
    result = cli("db.psql", "--dsn", any_empty_db.conninfo, "-c",
                 "UPDATE movement_library SET name = 'x' WHERE slug = 'back-squat'")
    assert result.code != 0
    assert "ERROR:  Published movements cannot be edited" in result.stderr


def test_skip_migrations_without_schema_says_what_to_do(empty_db: Target) -> None:
    before = table_hashes(empty_db)
    with pytest.raises(SchemaNotApplied, match="drop --skip-migrations"):
        seed(empty_db, skip_migrations=True)
    assert table_hashes(empty_db) == before


def test_skip_migrations_with_schema_seeds(migrated_db: Target) -> None:
    lines = seed(migrated_db, skip_migrations=True)
    assert "migrations: skipped (--skip-migrations)" in lines


def test_verify_passes_and_reports_json(migrated_db: Target) -> None:
    seed(migrated_db)
    report = verify(migrated_db, data_file=CANONICAL, schema_file=SETTINGS.schema_file)
    assert report.ok, report.problems
    data = report.as_dict()
    assert data["counts"] == {"library": 8, "current": 8, "staging": 8, "audit_log": 40}
    assert data["audit_by_action"] == {"APPROVED": 16, "CREATED": 8, "PUBLISHED": 8, "REVIEW_SUBMITTED": 8}


@pytest.mark.parametrize(
    ("bypass", "tamper", "expected"),
    [
        pytest.param("SET session_replication_role = replica",
                     "DELETE FROM movement_library WHERE slug = 'pull-up'",
                     "pull-up v1: draft is marked published but movement_library has no row",
                     id="library-row-removed-with-replica-role"),
        pytest.param("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete, "
                     "DISABLE TRIGGER movement_audit_log_removal_recorded",
                     "DELETE FROM movement_audit_log WHERE slug = 'deadlift' AND action = 'REVIEW_SUBMITTED'",
                     "deadlift v1: audit chain is CREATED > APPROVED > APPROVED > PUBLISHED",
                     id="audit-row-removed-with-trigger-disabled"),
        pytest.param("ALTER TABLE movement_library DISABLE TRIGGER movement_library_no_update_delete",
                     "UPDATE movement_library SET content_hash = repeat('0', 64) WHERE slug = 'bench-press'",
                     "bench-press v1: library row has no matching published draft",
                     id="library-row-edited-with-trigger-disabled"),
        # every way an audit chain can be wrong, each caught by the one-pass trail check
        pytest.param("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete",
                     "UPDATE movement_audit_log SET action = CASE action WHEN 'CREATED' THEN 'PUBLISHED' "
                     "ELSE 'CREATED' END WHERE slug = 'deadlift' AND action IN ('CREATED', 'PUBLISHED')",
                     "deadlift v1: audit chain is PUBLISHED > REVIEW_SUBMITTED > APPROVED > APPROVED > CREATED",
                     id="published-before-created"),
        pytest.param("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete",
                     "UPDATE movement_audit_log SET action = CASE action WHEN 'REVIEW_SUBMITTED' THEN "
                     "'APPROVED' ELSE 'REVIEW_SUBMITTED' END WHERE slug = 'deadlift' AND (action = "
                     "'REVIEW_SUBMITTED' OR actor = 'movelib/schema-check')",
                     "deadlift v1: audit chain is CREATED > APPROVED > REVIEW_SUBMITTED > APPROVED > PUBLISHED",
                     id="approved-before-review"),
        pytest.param("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete",
                     "UPDATE movement_audit_log SET actor = 'movelib/schema-check' WHERE slug = 'deadlift' "
                     "AND action = 'APPROVED'",
                     "deadlift v1: audit chain is CREATED > REVIEW_SUBMITTED > APPROVED > APPROVED > "
                     "PUBLISHED, expected CREATED > REVIEW_SUBMITTED > APPROVED > APPROVED > PUBLISHED; "
                     "1 distinct approver(s)",
                     id="one-approver-twice"),
        pytest.param("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete",
                     "UPDATE movement_audit_log SET details = '{\"content_hash\": \"x\"}' "
                     "WHERE slug = 'deadlift' AND action = 'PUBLISHED'",
                     "PUBLISHED row does not name the library content",
                     id="published-names-other-content"),
        pytest.param("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete",
                     "INSERT INTO movement_audit_log (action, slug, version, actor) "
                     "SELECT action, slug, version, actor FROM movement_audit_log "
                     "WHERE slug = 'deadlift' AND action = 'CREATED'",
                     "deadlift v1: audit chain is CREATED > REVIEW_SUBMITTED > APPROVED > APPROVED > "
                     "PUBLISHED > CREATED",
                     id="a-step-twice"),
        pytest.param("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete",
                     "INSERT INTO movement_audit_log (action, slug, version, actor) "
                     "VALUES ('PUBLISHED', 'ghost-squat', 1, 'someone')",
                     "ghost-squat v1: audit log says PUBLISHED but movement_library has no row",
                     id="published-without-library-row"),
        pytest.param("SET session_replication_role = replica",
                     "UPDATE movement_current SET version = 1 WHERE slug = 'pull-up'; "
                     "INSERT INTO movement_library (slug, version, name, classification, equipment, "
                     "primary_muscles, secondary_muscles, level, instructions, content_hash, "
                     "published_by, staging_id) SELECT slug, 2, name, classification, equipment, "
                     "primary_muscles, secondary_muscles, level, instructions, content_hash, "
                     "published_by, -1 FROM movement_library WHERE slug = 'pull-up'",
                     "pull-up: current version is v1 but v2 is published",
                     id="current-pointer-behind"),
    ],
)
def test_verify_catches_tampering_behind_its_back(migrated_db: Target, bypass: str, tamper: str, expected: str) -> None:
    seed(migrated_db)
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute(bypass)
        conn.execute(tamper)
    report = verify(migrated_db, data_file=CANONICAL, schema_file=SETTINGS.schema_file)
    assert not report.ok
    assert any(expected in p for p in report.problems), report.problems
    with pytest.raises(VerificationFailed):
        report.raise_if_failed()


def test_a_seed_that_fails_verification_is_rolled_back(migrated_db: Target, tmp_path: Path) -> None:
    """Verification runs inside the seed's transaction: a library it cannot vouch for (here a
    step of another movement's audit chain recorded twice, behind the tool's back) stops the
    seed before it commits, and the new movement is not published."""
    seed(migrated_db)
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete")
        conn.execute("INSERT INTO movement_audit_log (action, slug, version, actor) "
                     "SELECT action, slug, version, actor FROM movement_audit_log "
                     "WHERE slug = 'deadlift' AND action = 'CREATED'")
    data = json.loads(CANONICAL.read_text(encoding="utf-8"))
    data.append({**data[0], "slug": "box-squat", "name": "Box Squat"})
    grown = tmp_path / "grown.json"
    grown.write_text(json.dumps(data), encoding="utf-8")
    before = table_hashes(migrated_db)
    with pytest.raises(VerificationFailed, match="failed before the seed committed: 1 problem"):
        seed(migrated_db, grown)
    assert table_hashes(migrated_db) == before
    assert scalar(migrated_db, "SELECT count(*) FROM movement_library WHERE slug = 'box-squat'") == 0


def test_verify_with_file_reports_differences(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    report = verify(migrated_db, data_file=changed_copy(tmp_path, **{"pull-up": "Chin-Up"}),
                    schema_file=SETTINGS.schema_file)
    assert report.problems == ["pull-up: differs between the data file and the library"]


def test_cli_seed_then_verify(cli: Cli, server: Server, any_empty_db: Target) -> None:
    result = cli("seed", "--dsn", any_empty_db.conninfo)
    assert result.code == 0, result.output
    out = result.stdout
    assert out.startswith("target: postgresql://movelib_test:***@127.0.0.1:")
    assert "(from --dsn)" in out.splitlines()[0]
    assert "verify: ok (library 8, current 8, staging 8, audit_log 40)" in out
    assert "  8        40" in out  # the guide's count query, run
    assert "APPROVED          16" in out
    verified = cli("verify", "--dsn", any_empty_db.conninfo, "--json")
    assert verified.code == 0
    assert json.loads(verified.stdout)["ok"] is True


def test_cli_published_edit_exits_1_with_the_guides_line(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    before = table_hashes(migrated_db)
    path = changed_copy(tmp_path, **{"back-squat": "Squat"})
    result = cli("seed", "--dsn", migrated_db.conninfo, "--file", str(path))
    assert result.code == 1
    assert "ERROR   back-squat :: Published movements cannot be edited" in result.stderr.splitlines()
    assert "Traceback" not in result.output
    assert table_hashes(migrated_db) == before


def test_cli_verify_exits_1_on_tampering(cli: Cli, migrated_db: Target) -> None:
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM movement_audit_log WHERE action = 'PUBLISHED' AND slug = 'deadlift'")
    result = cli("verify", "--dsn", migrated_db.conninfo)
    assert result.code == 1
    assert "problem: deadlift v1: audit chain is" in result.stdout
    assert "verification of" in result.stderr


def test_seed_starts_the_local_emulator_when_it_is_down(cli: Cli, cli_env: dict[str, str]) -> None:
    try:
        result = cli("seed")
        assert result.code == 0, result.output
        assert "emulator: the local emulator was not running; started it (embedded)" in result.stdout
        assert "(profile local)" in result.stdout.splitlines()[0]
        assert "verify: ok (library 8, current 8, staging 8, audit_log 40)" in result.stdout
    finally:
        cli("db.down", "--purge")


def test_a_seed_result_has_text_and_json_forms_and_the_text_is_what_the_run_printed_last(migrated_db: Target) -> None:
    from movelib.base.text import as_json

    outcome, lines = seed_run(migrated_db)
    text = outcome.lines()
    assert text[0] == "seed: 8 published (0 new versions), 0 unchanged, 0 retired (seed run 1)"
    assert lines[-len(text):] == text and "Run them yourself with:" in text
    data = json.loads(as_json(outcome.as_dict()))
    assert data["published"] == {"published": 8, "new_versions": 0, "unchanged": 0, "retired": [],
                                 "seed_run": 1}
    assert data["verification"]["ok"] is True and data["plan"]["to_publish"] == 8
    assert data["guide"]["counts"] == [{"library": "8", "audit": "40"}]
