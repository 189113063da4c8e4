"""Movement versions, retirement and the dry-run plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support import CANONICAL, MIGRATION_NAMES, ROOT, Cli, Server, rows, settings, table_hashes
from support import seed_run as seed

from movelib.base.errors import DryRunRefused, PublishedEditError
from movelib.database.target import Target, target_from_dsn
from movelib.seed.plan import Plan
from movelib.seed.verify import verify
from movelib.seed.workflow import SeedOptions, run_seed
from movelib.ship.dump import dump
from movelib.ship.restore import plan_restore, restore

SETTINGS = settings()


def edited(tmp_path: Path, name: str = "edited.json", drop: tuple[str, ...] = ()) -> Path:
    data = [r for r in json.loads(CANONICAL.read_text()) if r["slug"] not in drop]
    for record in data:
        if record["slug"] == "back-squat":
            record["name"] = "Back Squat (High Bar)"
        if record["slug"] == "deadlift":
            record["equipment"] = ["barbell", "trap-bar"]
            record["coaching_cues"].append("Push the floor away")
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def v1_rows(target: Target) -> list[tuple[Any, ...]]:
    return rows(target, "SELECT l.*::text FROM movement_library l WHERE version = 1 ORDER BY id")


def test_versions_from_dry_run_to_round_trip(migrated_db: Target, pg15: Server, tmp_path: Path) -> None:
    seed(migrated_db)
    changed = edited(tmp_path)
    before = table_hashes(migrated_db)
    v1_before = v1_rows(migrated_db)

    lines: list[str] = []
    with pytest.raises(DryRunRefused, match="the seed would be refused: 2 published movement") as refused:
        run_seed(settings(), migrated_db, SeedOptions(data_file=changed, dry_run=True), lines.append)
    plan = refused.value.plan
    assert isinstance(plan, Plan)
    assert refused.value.exit_code == 1
    listed = [c for c in plan.changes if c.status != "unchanged"]
    assert [(c.slug, c.status, c.action) for c in listed] == [
        ("back-squat", "changed", "blocked"), ("deadlift", "changed", "blocked")]
    assert [str(d) for d in listed[0].diff] == ['name: "Back Squat" -> "Back Squat (High Bar)"']
    assert [d.field for d in listed[1].diff] == ["equipment", "coaching_cues"]
    assert "dry run: nothing is written" in lines
    assert table_hashes(migrated_db) == before

    outcome, _ = seed(migrated_db, changed, dry_run=True, new_versions=True)
    assert [(c.slug, c.current_version, c.next_version) for c in outcome.plan.of("publish")] == [
        ("back-squat", 1, 2), ("deadlift", 1, 2)]
    assert table_hashes(migrated_db) == before

    with pytest.raises(PublishedEditError, match="--new-versions` publishes them as new versions"):
        seed(migrated_db, changed)
    assert table_hashes(migrated_db) == before

    _, lines = seed(migrated_db, changed, new_versions=True)
    assert "seed: 2 published (2 new versions), 6 unchanged, 0 retired (seed run 2)" in lines
    assert "  PUBLISHED back-squat v2 (supersedes v1)" in lines
    assert rows(migrated_db, "SELECT count(*) FROM movement_library") == [(10,)]
    assert rows(migrated_db, "SELECT count(*) FROM movement_library_current") == [(8,)]
    assert rows(migrated_db, "SELECT count(*) FROM movement_audit_log") == [(50,)]
    assert v1_rows(migrated_db) == v1_before
    assert rows(migrated_db, "SELECT state, superseded_by FROM movement_library_versions "
                             "WHERE slug = 'back-squat' ORDER BY version") == [("superseded", 2), ("current", None)]
    assert rows(migrated_db, "SELECT name FROM movement_library_current WHERE slug = 'back-squat'") == [
        ("Back Squat (High Bar)",)]
    published = rows(migrated_db, "SELECT details->>'supersedes' FROM movement_audit_log "
                                  "WHERE slug = 'deadlift' AND action = 'PUBLISHED' ORDER BY id")
    assert published == [(None,), ("1",)]
    report = verify(migrated_db, data_file=changed, schema_file=SETTINGS.schema_file)
    assert report.ok, report.problems
    assert report.library_versions == {1: 8, 2: 2}

    # the whole history survives a dump and a restore onto PostgreSQL 15
    result = dump(migrated_db, ROOT / "migrations", tmp_path / "dumps")
    assert result.manifest.movement_versions == {"1": 8, "2": 2}
    fresh = pg15.create_database()
    try:
        other = target_from_dsn(pg15.dsn(fresh), "--dsn")
        restore(plan_restore(other, result.path))
        assert table_hashes(other) == table_hashes(migrated_db)
        assert verify(other, data_file=changed, schema_file=SETTINGS.schema_file).ok
    finally:
        pg15.drop_database(fresh)

    after = table_hashes(migrated_db)
    _, lines = seed(migrated_db, changed, new_versions=True)
    assert "seed: 0 published (0 new versions), 8 unchanged, 0 retired; nothing written" in lines
    assert table_hashes(migrated_db) == after


def test_cli_dry_run_json(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    before = table_hashes(migrated_db)
    result = cli("seed", "--dsn", migrated_db.conninfo, "--file", str(edited(tmp_path)), "--dry-run", "--json")
    assert result.code == 1  # blocked: the seed would be refused, result.output
    plan = json.loads(result.stdout)
    assert plan["totals"]["changed"] == 2 and plan["totals"]["unchanged"] == 6
    assert plan["pending_migrations"] == []
    assert [m["slug"] for m in plan["movements"] if m["status"] != "unchanged"] == ["back-squat", "deadlift"]
    assert len(plan["movements"]) == 8  # the unchanged ones are listed too
    assert plan["movements"][0]["diff"] == [{"field": "name", "old": "Back Squat", "new": "Back Squat (High Bar)"}]
    assert table_hashes(migrated_db) == before
    text = cli("seed", "--dsn", migrated_db.conninfo, "--file", str(edited(tmp_path)), "--dry-run")
    assert "  CHANGED    back-squat v1: blocked" in text.stdout
    assert '      name: "Back Squat" -> "Back Squat (High Bar)"' in text.stdout
    assert cli("seed", "--dsn", migrated_db.conninfo, "--json").code == 2  # bad usage


def test_dry_run_on_an_empty_database_writes_nothing(empty_db: Target) -> None:
    outcome, lines = seed(empty_db, dry_run=True)
    assert outcome.plan.totals()["new"] == 8
    assert (f"migrations: {len(MIGRATION_NAMES)} pending, would apply "
            f"({', '.join(MIGRATION_NAMES)})") in lines
    assert rows(empty_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_missing_movements_are_kept_then_retired_through_an_audited_step(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    data = [r for r in json.loads(CANONICAL.read_text()) if r["slug"] != "farmers-carry"]
    smaller = tmp_path / "smaller.json"
    smaller.write_text(json.dumps(data))

    before = table_hashes(migrated_db)
    _, lines = seed(migrated_db, smaller)
    assert any("were kept (--retire retires them): farmers-carry" in line for line in lines)
    assert table_hashes(migrated_db) == before

    _, lines = seed(migrated_db, smaller, retire=True)
    assert "  RETIRED   farmers-carry" in lines
    assert rows(migrated_db, "SELECT count(*) FROM movement_library") == [(8,)]  # never deleted
    assert rows(migrated_db, "SELECT count(*) FROM movement_library_current") == [(7,)]
    assert rows(migrated_db, "SELECT action, actor LIKE '%@%' FROM movement_audit_log "
                             "WHERE slug = 'farmers-carry' ORDER BY id DESC LIMIT 1") == [("RETIRED", True)]
    assert rows(migrated_db, "SELECT state FROM movement_library_versions WHERE slug = 'farmers-carry'") == [("retired",)]
    assert verify(migrated_db, data_file=smaller, schema_file=SETTINGS.schema_file).ok

    # back in the file: blocked unless published as a new version
    with pytest.raises(PublishedEditError, match="farmers-carry"):
        seed(migrated_db)
    _, lines = seed(migrated_db, new_versions=True)
    assert "  PUBLISHED farmers-carry v2" in lines
    assert verify(migrated_db, data_file=CANONICAL, schema_file=SETTINGS.schema_file).ok


def test_the_database_keeps_one_current_version_per_slug(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    seed(migrated_db, edited(tmp_path), new_versions=True)
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        v1 = conn.execute("SELECT id FROM movement_library WHERE slug = 'back-squat' AND version = 1").fetchone()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO movement_current (slug, version, library_id) VALUES ('back-squat', 1, %s)", v1)
        with pytest.raises(psycopg.errors.RaiseException, match="can only move to a newer version"):
            conn.execute("UPDATE movement_current SET version = 1, library_id = %s WHERE slug = 'back-squat'", v1)
        with pytest.raises(psycopg.errors.RaiseException, match="is not library row"):
            conn.execute("UPDATE movement_current SET version = 3 WHERE slug = 'back-squat'")


def test_verify_catches_a_pointer_removed_without_retirement(migrated_db: Target) -> None:
    seed(migrated_db)
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM movement_current WHERE slug = 'pull-up'")
    report = verify(migrated_db, schema_file=SETTINGS.schema_file)
    assert "pull-up v1: has no current version and no RETIRED audit row" in report.problems
