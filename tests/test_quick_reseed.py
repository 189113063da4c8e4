"""An unchanged reseed: vouched for by the database's summary, not by reading the library back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from support import CANONICAL, MIGRATION_NAMES, ROOT, seed, seed_run, settings, table_hashes

from movelib.base.errors import PublishedEditError, VerificationFailed
from movelib.database import db
from movelib.database.target import Target
from movelib.seed.plan import make_plan, unchanged_plan
from movelib.seed.reseed import quick_check
from movelib.seed.verify import check, verify
from movelib.seed.workflow import SeedOptions, run_seed
from movelib.source.datafile import load_movements

SETTINGS = settings()
QUICK = "is unchanged since seed run"


def reformatted(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    """The placeholders as other bytes (indented), with the same content, or with ``extra``
    changes of names."""
    data = json.loads(CANONICAL.read_text(encoding="utf-8"))
    for record in data:
        record["name"] = (extra or {}).get(record["slug"], record["name"])
    path = tmp_path / "reformatted.json"
    path.write_text(json.dumps(data, indent=4), encoding="utf-8")
    return path


def test_an_unchanged_reseed_takes_the_quick_path_and_says_what_it_checked(any_empty_db: Target) -> None:
    seed(any_empty_db)
    before = table_hashes(any_empty_db)
    lines = seed(any_empty_db)
    assert ("plan: data/movements-canonical.json is unchanged since seed run 1 and the library "
            "still matches it: nothing to publish") in lines
    assert "seed: 0 published (0 new versions), 8 unchanged, 0 retired; nothing written" in lines
    assert "verify: ok (library 8, current 8, staging 8, audit_log 40)" in lines
    quick = [line for line in lines if line.startswith("  quick check: ")]
    assert quick == ["  quick check: same file as seed run 1 (sha256); the current movements and "
                     "their content hashes, the drafts and the audit rows by action match it. Each "
                     "audit chain's order and approvers were not re-read (`inv verify` reads "
                     "everything)"]
    assert table_hashes(any_empty_db) == before


def test_the_quick_path_gives_the_full_path_s_plan_and_report(migrated_db: Target, tmp_path: Path) -> None:
    """Versions above 1 included: two movements are at v2 after --new-versions."""
    seed(migrated_db)
    changed = reformatted(tmp_path, {"deadlift": "Conventional Deadlift", "pull-up": "Chin-Up"})
    seed(migrated_db, changed, new_versions=True)
    dataset = load_movements(changed, SETTINGS.schema_file)
    with db.connect(migrated_db, autocommit=True) as conn:
        quick = quick_check(conn, migrated_db, dataset)
        assert quick is not None
        versions = {c.slug: c.current_version for c in unchanged_plan(conn, dataset).changes}
        assert {slug: v for slug, v in versions.items() if v != 1} == {"deadlift": 2,
                                                                    "pull-up": 2}
        assert len(versions) == 8
        full = check(conn, migrated_db, dataset, extra_ok=True)
        plan = make_plan(conn, dataset, new_versions=False, retire=False)
    assert quick.report.as_dict() == full.as_dict()
    outcome, lines = seed_run(migrated_db, changed)
    assert any(QUICK in line for line in lines)
    assert [(c.slug, c.status, c.action, c.current_version, c.next_version)
            for c in outcome.plan.changes] == [
        (c.slug, c.status, c.action, c.current_version, c.next_version) for c in plan.changes]
    assert outcome.verification is not None
    assert outcome.verification.lines()[:4] == full.lines()[:4]


def test_other_bytes_with_the_same_content_take_the_full_path_to_the_same_result(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    quick = seed(migrated_db)
    full = seed(migrated_db, reformatted(tmp_path))
    assert not any(QUICK in line for line in full)
    assert not any(line.startswith("  quick check") for line in full)
    common = [line for line in quick if QUICK not in line and not line.startswith("  quick check")
              and "movements-canonical.json" not in line]
    assert common == [line for line in full if "reformatted.json" not in line]


def test_a_library_changed_behind_its_back_takes_the_full_path(migrated_db: Target) -> None:
    """An audit row removed: the counts by action no longer match, the full verification runs
    and finds the broken chain; the reseed fails and writes nothing."""
    seed(migrated_db)
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete, "
                     "DISABLE TRIGGER movement_audit_log_removal_recorded")
        conn.execute("DELETE FROM movement_audit_log WHERE slug = 'deadlift' AND action = 'REVIEW_SUBMITTED'")
    lines: list[str] = []
    with pytest.raises(VerificationFailed, match="failed before the seed committed"):
        run_seed(SETTINGS, migrated_db, SeedOptions(data_file=CANONICAL), lines.append)
    assert not any(QUICK in line for line in lines)
    assert any("deadlift v1: audit chain is CREATED > APPROVED" in line for line in lines), lines


def test_a_current_movement_edited_behind_its_back_takes_the_full_path(migrated_db: Target) -> None:
    seed(migrated_db)
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM movement_current WHERE slug = 'pull-up'")
    lines: list[str] = []
    with pytest.raises(PublishedEditError, match="pull-up"):  # the full plan: pull-up was "retired"
        run_seed(SETTINGS, migrated_db, SeedOptions(data_file=CANONICAL), lines.append)
    assert not any(QUICK in line for line in lines)


def test_the_quick_path_leaves_chain_order_to_inv_verify(migrated_db: Target) -> None:
    """What the default does not re-read, and `inv verify` does: the order of a chain."""
    seed(migrated_db)
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute("ALTER TABLE movement_audit_log DISABLE TRIGGER movement_audit_log_no_update_delete")
        conn.execute("UPDATE movement_audit_log SET action = CASE action WHEN 'CREATED' THEN "
                     "'PUBLISHED' ELSE 'CREATED' END WHERE slug = 'deadlift' "
                     "AND action IN ('CREATED', 'PUBLISHED')")
    assert any(QUICK in line for line in seed(migrated_db))
    report = verify(migrated_db, data_file=CANONICAL, schema_file=SETTINGS.schema_file)
    assert any("deadlift v1: audit chain is PUBLISHED" in p for p in report.problems)


def test_an_unchanged_seed_with_nothing_to_migrate_does_not_load_yoyo(migrated_db: Target) -> None:
    """A fresh interpreter (the only way to see what gets imported) runs `inv seed` twice on a
    migrated database: the second has nothing pending, and checks that with a plain query."""
    seed(migrated_db)
    probe = (
        "import sys\n"
        "from movelib_cli.program import program\n"
        "try:\n"
        f"    program.run(['inv', 'seed', '--dsn', {migrated_db.conninfo!r}, '--quiet'])\n"
        "except SystemExit as exc:\n"
        "    print('EXIT', exc.code, file=sys.stderr)\n"
        "print('YOYO', 'yoyo' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120)
    assert f"migrations: up to date ({len(MIGRATION_NAMES)} applied)" in proc.stdout, proc.stdout + proc.stderr
    assert QUICK in proc.stdout
    assert "YOYO False" in proc.stderr, proc.stderr[-2000:]
