"""Behind a transaction pooler, as most managed services hand out by default.

Debian's PgBouncer in ``pool_mode = transaction`` sits in front of the PostgreSQL 18 test server
with two server connections for all its clients (handed out in turn), so consecutive
transactions of one client run on different server connections and clients share them. Nothing
movelib does may rely on a session: its lock, its settings and its prepared statements.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest
from servers import Pooler
from support import (
    CANONICAL,
    ROOT,
    Cli,
    Server,
    assert_no_secret,
    database,
    library_state,
    start_inv,
)

from movelib.database.target import target_from_dsn
from movelib.source.synth import write_synthetic

pytestmark = pytest.mark.slow  # PgBouncer and its processes: CI runs them

RUNS = 5


def _advisory_locks(server: Server) -> list[tuple[object, ...]]:
    with server.admin() as conn:
        return conn.execute("SELECT pid, database, objid, granted FROM pg_locks "
                            "WHERE locktype = 'advisory'").fetchall()


def _pooled_settings(pooler: Pooler, dbname: str) -> set[tuple[str, ...]]:
    """What the pooler's server connections hold, asked in turn on each of them."""
    seen = set()
    with psycopg.connect(pooler.dsn(dbname), autocommit=True, prepare_threshold=None) as conn:
        for _ in range(6):
            row = conn.execute(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), "
                "current_setting('idle_in_transaction_session_timeout'), "
                "current_setting('DateStyle'), current_setting('TimeZone'), "
                "current_setting('check_function_bodies'), current_setting('client_min_messages'), "
                "current_setting('extra_float_digits')").fetchone()
            assert row is not None
            seen.add(tuple(str(v) for v in row))
    return seen


def test_concurrent_seeds_through_the_pooler_end_with_the_content_of_one(
        pooler: Pooler, pg18: Server, cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "movements-3000.json"
    write_synthetic(3000, data)
    with database(pg18, "template0") as name:  # a fresh database: the migrations race too
        defaults = _pooled_settings(pooler, name)
        started = time.monotonic()
        runs = [start_inv(cli_env, "seed", "--dsn", pooler.dsn(name), "--file", str(data),
                          "--lock-timeout", "300") for _ in range(RUNS)]
        outputs = [run.communicate(timeout=600) for run in runs]
        elapsed = time.monotonic() - started
        codes = [run.returncode for run in runs]
        for out, err in outputs:
            assert "Traceback" not in out + err, err
            assert_no_secret(out + err)
        assert codes == [0] * RUNS, outputs
        published = sum("seed: 3000 published" in out for out, _ in outputs)
        unchanged = sum("is unchanged since seed run" in out for out, _ in outputs)
        assert (published, unchanged) == (1, RUNS - 1), outputs
        direct = target_from_dsn(pg18.dsn(name), "test")
        with psycopg.connect(direct.conninfo) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM movement_library), (SELECT count(*) FROM movement_current), "
                "(SELECT count(*) FROM movement_seed_run), (SELECT count(*) FROM _yoyo_migration)"
            ).fetchone()
        assert counts == (3000, 3000, 1, len(list((ROOT / "migrations").glob("*.sql"))))
        assert _advisory_locks(pg18) == [], "a lock outlived its run on a pooled connection"
        assert _pooled_settings(pooler, name) == defaults, "a setting outlived its run"
        print(f"{RUNS} concurrent seeds of 3000 movements through the pooler: exit codes {codes}, "
              f"{published} published, {unchanged} unchanged, library {counts[0]} rows, "
              f"advisory locks left 0, {elapsed:.1f} s")


def revised(folder: Path) -> Path:
    """The canonical library with two movements renamed."""
    data = json.loads(CANONICAL.read_text())
    for movement in data[:2]:
        movement["name"] += " (revised)"
    path = folder / "revised.json"
    path.write_text(json.dumps(data))
    return path


def test_migrate_dump_restore_verify_diff_and_psql_through_the_pooler(
        cli: Cli, pooler: Pooler, pg18: Server, tmp_path: Path) -> None:
    with database(pg18, "template0") as source, database(pg18, "template0") as copy:
        src, dst = pooler.dsn(source), pooler.dsn(copy)
        steps = [("migrate", "--dsn", src), ("migrate", "--dsn", dst), ("seed", "--dsn", src),
                 ("dump", "--dsn", src, "--output-dir", str(tmp_path)),
                 ("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"),
                  "--dsn", dst, "--yes"),
                 ("verify", "--dsn", dst), ("diff", "--from", src, "--to", dst),
                 # a release changing two movements, merged into the tables the first restore made
                 ("seed", "--dsn", src, "--file", str(revised(tmp_path)), "--new-versions"),
                 ("dump", "--dsn", src, "--output-dir", str(tmp_path)),
                 ("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"),
                  "--dsn", dst, "--yes"),
                 ("verify", "--dsn", dst), ("diff", "--from", src, "--to", dst),
                 ("db.psql", "--dsn", dst, "--command", "SELECT count(*) FROM movement_library")]
        defaults = _pooled_settings(pooler, copy)
        for step in steps:
            result = cli(*step)
            assert result.code == 0, f"inv {step[0]} through the pooler:\n{result.output}"
            assert_no_secret(result.output)
        assert library_state(target_from_dsn(pg18.dsn(source), "t")) == \
            library_state(target_from_dsn(pg18.dsn(copy), "t"))
        assert _advisory_locks(pg18) == []
        assert _pooled_settings(pooler, copy) == defaults


@pytest.mark.parametrize("reader", ["psql", "psycopg"])
def test_both_dump_readers_work_through_the_pooler(pooler: Pooler, pg18: Server, tmp_path: Path,
                                                   reader: str) -> None:
    """psql imports the snapshot psycopg's transaction exported: on another server connection
    behind the pooler, which PostgreSQL allows while the exporting transaction is open."""
    from support import seed

    from movelib.ship.dump import dump

    with database(pg18, "movelib_template") as name:
        seed(target_from_dsn(pg18.dsn(name), "t"))
        result = dump(target_from_dsn(pooler.dsn(name), "t"), Path("migrations"), tmp_path,
                      reader=reader, update_latest=False)
        assert result.manifest.row_counts["movement_library"] == 8
