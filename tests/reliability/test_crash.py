"""Every run is all-or-nothing: SIGKILL at random moments, and the server dying under a run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support import (
    FAST_SETTINGS,
    TEST_USER,
    Cli,
    Server,
    free_port,
    library_state,
    settings,
    start_inv,
    table_hashes,
)

from movelib.database.emulator.embedded import EmbeddedEmulator
from movelib.database.emulator.pgbin import wheel_bin_dir
from movelib.database.profiles import Profile
from movelib.database.target import Target, target_from_dsn
from movelib.seed.verify import verify
from movelib.source.synth import write_synthetic

pytestmark = pytest.mark.slow
SETTINGS = settings()
TRIALS = int(os.environ.get("MOVELIB_CRASH_TRIALS", "20"))




def content(target: Target) -> dict[str, str]:
    """The movement data (an absent table holds no rows). Migrations are their own atomic
    steps: a kill between the last migration and the seed leaves an empty, migrated library,
    which is the old content."""
    return {table: "0:" if digest == "absent" else digest
            for table, digest in table_hashes(target).items()
            if table.startswith("movement_") and table != "movement_environment"}


def settle(server: Server, dbname: str) -> None:
    """Wait for the killed client's backend to notice and roll back (or end it)."""
    deadline = time.monotonic() + 10
    with server.admin() as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                               (dbname,)).fetchone()
            if row == (0,):
                return
            time.sleep(0.05)
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                     (dbname,))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("crash")
    new, old = base / "new.json", base / "old.json"
    write_synthetic(2000, new)
    old.write_text(json.dumps(json.loads(new.read_text())[:700]))
    return {"new": new, "old": old}


def calibrate(env: dict[str, str], server: Server, args: list[str]) -> tuple[float, list[tuple[Any, ...]]]:
    """How long one uninterrupted run takes, into a scratch database (kills fall inside it), and
    the library it leaves (what a run that completes must leave, as content)."""
    scratch = server.create_database()
    started = time.monotonic()
    run = start_inv(env, *args, "--dsn", server.dsn(scratch))
    run.communicate()
    window = time.monotonic() - started
    assert run.returncode == 0
    finished = library_state(target_from_dsn(server.dsn(scratch), "--dsn"))
    server.drop_database(scratch)
    return window, finished


@contextmanager
def older_library(cli: Cli, server: Server, old: Path) -> Iterator[str]:
    """A database holding the older library, seeded once: each trial's target is a copy."""
    name = server.create_database()
    try:
        assert cli("seed", "--dsn", server.dsn(name), "--file", str(old), "--quiet").code == 0
        yield name
    finally:
        server.drop_database(name)


class Kills:
    """SIGKILL at a random moment of a run once it has connected to its database (before, it is
    still starting the interpreter and importing: drawn from the process's start, 34 of 60 kills
    landed there, testing nothing of the database), drawn within how long a run takes:
    ``window``, from one uninterrupted run, shortened to any run that ended before its kill (a
    run measured on a slow moment would put later kills after their runs' end, and those trials
    do not count)."""

    def __init__(self, rng: random.Random, window: float, server: Server) -> None:
        self.rng, self.window, self.server = rng, window, server

    def __call__(self, run: subprocess.Popen[str], dbname: str) -> bool:
        started = time.monotonic()
        with self.server.admin() as conn:  # the trial's database is the run's alone
            while run.poll() is None and conn.execute(
                    "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE datname = %s)",
                    (dbname,)).fetchone() == (True,):
                time.sleep(0.002)
        connected = time.monotonic()
        left = max(0.0, self.window - (connected - started))
        deadline = connected + self.rng.uniform(0.0, 0.95 * left)
        while run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if run.poll() is None:
            run.kill()
            run.communicate()
            return True
        self.window = min(self.window, time.monotonic() - started)
        run.communicate()
        return False


@pytest.mark.parametrize("start", ["empty", "older-library"])
def test_seed_killed_at_random_is_old_or_new_never_a_mix(cli: Cli, cli_env: dict[str, str], pg18: Server, files: dict[str, Path], start: str) -> None:
    killed = trial = landed_after = 0
    window, newest = calibrate(cli_env, pg18, ["seed", "--file", str(files["new"]), "--quiet"])
    kill = Kills(random.Random(f"seed-{start}"), window, pg18)
    with (older_library(cli, pg18, files["old"]) if start == "older-library"
          else nullcontext("template0")) as template:
        while killed < TRIALS and trial < 3 * TRIALS:
            trial += 1
            db = pg18.create_database(template)
            target = target_from_dsn(pg18.dsn(db), "--dsn")
            before = content(target)
            killed += kill(start_inv(cli_env, "seed", "--dsn", target.conninfo, "--file", str(files["new"]), "--quiet"), db)
            settle(pg18, db)
            after = content(target)
            landed_after += after != before
            if after != before:  # then it must be exactly the new library
                report = verify(target, data_file=files["new"], schema_file=SETTINGS.schema_file)
                assert report.ok, (trial, report.problems)
                assert report.counts["library"] == 2000
            # a retry works (the seed verifies inside its transaction) and leaves the new library
            rerun = cli("seed", "--dsn", target.conninfo, "--file", str(files["new"]), "--quiet")
            assert rerun.code == 0, (trial, rerun.output)
            assert library_state(target) == newest, trial
            pg18.drop_database(db)
    print(f"seed/{start}: {killed} of {trial} runs killed mid-way, {landed_after} after the commit")
    assert killed >= TRIALS, f"only {killed} of {trial} runs were killed mid-way"


def test_restore_killed_at_random_is_old_or_new_never_a_mix(cli: Cli, cli_env: dict[str, str], pg18: Server, files: dict[str, Path], tmp_path: Path) -> None:
    source = target_from_dsn(pg18.dsn(pg18.create_database()), "--dsn")
    assert cli("seed", "--dsn", source.conninfo, "--file", str(files["new"]), "--quiet").code == 0
    assert cli("dump", "--dsn", source.conninfo, "--output-dir", str(tmp_path)).code == 0
    dump_file = tmp_path / "movements_seed_latest.sql"
    killed = trial = landed_after = 0
    window, _ = calibrate(cli_env, pg18, ["restore", "--dump-file", str(dump_file), "--yes"])
    kill = Kills(random.Random("restore"), window, pg18)
    released = library_state(source)
    with older_library(cli, pg18, files["old"]) as older:
        while killed < TRIALS and trial < 3 * TRIALS:
            trial += 1
            # half into an older library, half into an empty database
            db = pg18.create_database(older if trial % 2 else "template0")
            target = target_from_dsn(pg18.dsn(db), "--dsn")
            before = table_hashes(target)
            killed += kill(start_inv(cli_env, "restore", "--dump-file", str(dump_file), "--dsn", target.conninfo, "--yes"), db)
            settle(pg18, db)
            # as it was, or holding the source's library (a merge keeps the target's ids and history)
            after = table_hashes(target)
            landed_after += after != before
            assert after == before or library_state(target) == released, trial
            rerun = cli("restore", "--dump-file", str(dump_file), "--dsn", target.conninfo, "--yes")
            assert rerun.code == 0, (trial, rerun.output)
            assert library_state(target) == released
            pg18.drop_database(db)
    print(f"restore: {killed} of {trial} runs killed mid-way, {landed_after} after the commit")
    assert killed >= TRIALS, f"only {killed} of {trial} runs were killed mid-way"


@pytest.fixture
def fragile_server(tmp_path: Path) -> Iterator[EmbeddedEmulator]:
    profile = Profile("fragile", "127.0.0.1", free_port(), TEST_USER, "fr@gile:/%#pw", "fragile")
    server = EmbeddedEmulator(profile, base_dir=tmp_path, bin_dir=wheel_bin_dir(), settings=FAST_SETTINGS)
    server.up()
    try:
        yield server
    finally:
        server.down(purge=True)


def _wait_until_writing(server: EmbeddedEmulator, task: str, run: subprocess.Popen[str]) -> None:
    """Return once the run's connection is busy inside its transaction (not on a timer: a fast
    machine could finish first, a slow one not have started)."""
    query = ("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
             "AND state = 'active' AND xact_start IS NOT NULL")
    with psycopg.connect(server.profile.url(), autocommit=True) as watcher:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            row = watcher.execute(query, (f"movelib {task} pid={run.pid} %",)).fetchone()
            if row and row[0]:
                return
            time.sleep(0.01)
    pytest.fail(f"the {task} run ended (code {run.poll()}) before it was seen writing")


def _stop_immediately(server: EmbeddedEmulator) -> None:
    from movelib.database.emulator.pgbin import server_user

    proc = server_user(server.system_user).run(
        [server.bin_dir / "pg_ctl", "stop", "-D", server.data_dir, "-m", "immediate", "-w"])
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("task", ["seed", "restore"])
def test_the_server_dying_under_a_run_is_a_clean_error_and_a_retry_works(cli: Cli, cli_env: dict[str, str], fragile_server: EmbeddedEmulator, files: dict[str, Path], tmp_path: Path, task: str) -> None:
    dsn = fragile_server.profile.url()
    big = tmp_path / "big.json"
    write_synthetic(10_000, big)
    args = ["seed", "--dsn", dsn, "--file", str(big), "--quiet"]
    if task == "restore":
        assert cli(*args).code == 0
        assert cli("dump", "--dsn", dsn, "--output-dir", str(tmp_path)).code == 0
        args = ["restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"), "--dsn", dsn, "--yes"]
    run = start_inv(cli_env, *args)
    _wait_until_writing(fragile_server, task, run)
    _stop_immediately(fragile_server)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 2, out + err
    assert "Traceback" not in out + err
    assert "fragile_server" not in err and "fr@gile" not in out + err
    assert "postgresql://movelib_test:***@127.0.0.1:" in err
    assert ("lost the connection" in err or "cannot reach" in err or "failed and was rolled back" in err), err
    fragile_server.up()
    retry = cli(*args)
    assert retry.code == 0, retry.output
    target: Target = target_from_dsn(dsn, "--dsn")
    assert verify(target, data_file=big, schema_file=SETTINGS.schema_file).ok
