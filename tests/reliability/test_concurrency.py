"""No two runs interleave: one advisory lock per target, and nothing stale after a kill."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from support import Cli, Server, settings, start_inv

from movelib.database.db import LOCK_KEY
from movelib.database.target import Target
from movelib.seed.verify import verify
from movelib.source.synth import write_synthetic

pytestmark = pytest.mark.slow  # concurrent processes: CI runs them

SETTINGS = settings()




def test_a_second_run_waits_then_names_the_holder(cli: Cli, migrated_db: Target) -> None:
    with psycopg.connect(migrated_db.conninfo, autocommit=True,
                         application_name="movelib seed pid=4242 host=ci-runner-7") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        pid = holder.info.backend_pid
        started = time.monotonic()
        result = cli("seed", "--dsn", migrated_db.conninfo, "--lock-timeout", "1")
        waited = time.monotonic() - started
    assert result.code == 2
    assert f"is locked by another run: server pid {pid}, movelib seed pid=4242 host=ci-runner-7" in result.stderr
    assert ", since 20" in result.stderr and "waited 1 s" in result.stderr
    assert 1 <= waited < 10


def test_migrate_and_restore_take_the_same_lock(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        migrated = cli("migrate", "--dsn", migrated_db.conninfo, "--lock-timeout", "0.5")
        assert migrated.code == 2 and "is locked by another run" in migrated.stderr
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    dumped = cli("dump", "--dsn", migrated_db.conninfo, "--output-dir", str(tmp_path))
    assert dumped.code == 0
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        restored = cli("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"),
                       "--dsn", migrated_db.conninfo, "--yes", "--lock-timeout", "0.5")
        assert restored.code == 2 and "is locked by another run" in restored.stderr


def test_ten_concurrent_seeds_end_with_the_content_of_one(cli_env: dict[str, str], migrated_db: Target) -> None:
    runs = [start_inv(cli_env, "seed", "--dsn", migrated_db.conninfo, "--quiet") for _ in range(10)]
    outputs = [run.communicate(timeout=300) for run in runs]
    codes = [run.returncode for run in runs]
    assert codes == [0] * 10, outputs
    published = sum("seed: 8 published" in out for out, _ in outputs)
    unchanged = sum("seed: 0 published (0 new versions), 8 unchanged" in out for out, _ in outputs)
    assert (published, unchanged) == (1, 9)
    with psycopg.connect(migrated_db.conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM movement_seed_run").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM movement_audit_log").fetchone() == (40,)
    assert verify(migrated_db, data_file=SETTINGS.data_file, schema_file=SETTINGS.schema_file).ok


def _lock_held(target: Target) -> bool:
    with psycopg.connect(target.conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = %s", (LOCK_KEY,)).fetchone()
        return bool(row and row[0])


def test_a_killed_run_leaves_no_stale_lock(cli: Cli, cli_env: dict[str, str], pg18: Server, tmp_path: Path) -> None:
    target_db = pg18.create_database()  # empty: the run migrates, then seeds
    dsn = pg18.dsn(target_db)
    data = tmp_path / "big.json"
    write_synthetic(20_000, data)
    run = start_inv(cli_env, "seed", "--dsn", dsn, "--file", str(data), "--quiet")
    from movelib.database.target import target_from_dsn

    target = target_from_dsn(dsn, "--dsn")
    deadline = time.monotonic() + 60
    while not _lock_held(target) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _lock_held(target), "the seed never took the lock"
    run.kill()
    run.communicate()
    started = time.monotonic()
    rerun = cli("seed", "--dsn", dsn, "--lock-timeout", "5", "--quiet")
    assert rerun.code == 0, rerun.output
    assert time.monotonic() - started < 20
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM yoyo_lock").fetchone() == (0,)
    pg18.drop_database(target_db)
