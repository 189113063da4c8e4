"""Rough edges a new user met, each fixed: one wording of the target order, one `auto` rule that
`db.status` explains, emulators started the same way by every task, one meaning of "matches",
commands that can be pasted, the target said first, a quiet server log."""

from __future__ import annotations

import json
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CANONICAL, ROOT, Cli, Server, require_docker, rows, settings, table_hashes
from support import seed_run as seed

from movelib.base.errors import DryRunRefused, PublishedEditError
from movelib.database.emulator import EmulatorSettings, choose_backend
from movelib.database.migrations import migrate
from movelib.database.profiles import Profile
from movelib.database.target import Target
from movelib.seed.plan import Plan
from movelib.seed.workflow import SeedOptions, run_seed
from movelib_cli.options import TARGET_ORDER

STARTED = "emulator: the local emulator was not running; started it (embedded)"
MISSING_IMAGE = "movelib/no-such-image:404"


def words(text: str) -> str:
    return " ".join(text.replace("`", "").split())


@pytest.fixture
def emulators(cli: Cli, cli_overrides: dict[str, str]) -> Iterator[dict[str, str]]:
    yield cli_overrides
    for profile in ("local", "staging"):
        cli("db.down", "--profile", profile, "--purge")


@pytest.fixture
def docker_engine() -> Iterator[Any]:
    """A Docker engine that answers (the `docker` marker follows this fixture's name)."""
    client = require_docker()
    yield client
    client.close()


def test_the_target_order_is_said_in_one_wording(cli: Cli) -> None:
    assert TARGET_ORDER in words((ROOT / "README.md").read_text())
    for task in ("seed", "verify", "migrate", "dump", "restore", "db.psql"):
        assert TARGET_ORDER in words(cli("--help", task).stdout), task


# -- auto, and what db.status says ------------------------------------------------------------


def test_auto_picks_the_backend_that_holds_the_data(tmp_path: Path) -> None:
    profile = Profile("local", "127.0.0.1", 1, "u", "p", "d")
    (tmp_path / "local" / "pgdata").mkdir(parents=True)
    assert choose_backend(profile, EmulatorSettings(base_dir=tmp_path)) == (
        "embedded", f"auto: its data is in {tmp_path.name}/local")


def test_auto_without_an_engine_is_embedded_and_status_says_why(cli: Cli) -> None:
    env = {"INVOKE_EMULATOR_BACKEND": "auto", "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    status = cli("db.status", env=env)
    assert status.code == 0, status.output
    local = next(line for line in status.stdout.splitlines() if line.startswith("local "))
    assert "embedded" in local and "auto: no Docker engine answers" in local


def test_auto_with_an_engine_but_no_image_starts_and_shows_embedded(cli: Cli, emulators: dict[str, str], docker_engine: Any) -> None:
    env = {"INVOKE_EMULATOR_BACKEND": "auto", "INVOKE_EMULATOR_IMAGE": MISSING_IMAGE}
    before = cli("db.status", env=env).stdout
    assert f"auto: Docker answers but has no {MISSING_IMAGE} image (--backend docker pulls it)" in before
    up = cli("db.up", env=env)
    assert up.code == 0 and "(embedded, PostgreSQL 18" in up.stdout, up.output
    local = next(line for line in cli("db.status", env=env).stdout.splitlines() if line.startswith("local "))
    assert " embedded " in local and " yes " in local and "auto: db.up started it on embedded (recorded in emulators/local.backend)" in local


def test_status_names_who_holds_a_stopped_emulators_port(cli: Cli) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        status = cli("db.status", env={"INVOKE_PROFILES_LOCAL_PORT": str(port)})
    local = next(line for line in status.stdout.splitlines() if line.startswith("local "))
    assert f"port {port} is taken by " in local and " no " in local, status.stdout


# -- one behaviour for every task: a profile's stopped emulator starts, a DSN's never ---------


def test_every_task_on_a_profile_starts_its_stopped_emulator(cli: Cli, emulators: dict[str, str], tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    for args in (["migrate"], ["verify"], ["seed", "--dry-run"], ["seed"], ["dump", "--output-dir", str(dumps)],
                 ["restore", "--dump-file", str(dumps / "movements_seed_latest.sql"), "--yes"],
                 ["db.psql", "-c", "SELECT 40 + 2"]):
        assert cli("db.down").code == 0
        result = cli(*args)
        assert result.code == 0, (args, result.output)
        lines = result.stdout.splitlines()
        assert lines[0].startswith("target: ") and lines[0].endswith("(profile local)"), (args, lines[:3])
        assert STARTED in lines, (args, lines[:5])
        again = cli(*args)
        assert STARTED not in again.stdout, args  # running: nothing to say
        status = next(line for line in cli("db.status", env={"INVOKE_EMULATOR_BACKEND": "auto"}).stdout.splitlines()
                      if line.startswith("local "))
        assert "started by a task that found it stopped on embedded" in status, (args, status)
        assert "db.up started it" not in status


def test_a_dsn_target_is_never_started(cli: Cli, emulators: dict[str, str]) -> None:
    port = emulators["INVOKE_PROFILES_LOCAL_PORT"]
    result = cli("verify", "--dsn", f"postgresql://athlete:athlete@127.0.0.1:{port}/athlete_planning")
    assert result.code == 2 and "cannot reach" in result.stderr
    assert "emulator:" not in result.output
    assert not (Path(emulators["INVOKE_EMULATOR_DIR"]) / "local").exists()


# -- one meaning of "matches" -----------------------------------------------------------------


def test_seed_and_verify_say_the_same_thing_about_a_smaller_file(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    smaller = tmp_path / "smaller.json"
    smaller.write_text(json.dumps([r for r in json.loads(CANONICAL.read_text()) if r["slug"] != "farmers-carry"]))
    seeded = cli("seed", "--dsn", migrated_db.conninfo, "--file", str(smaller))
    assert seeded.code == 0, seeded.output
    assert (f"  every movement of {smaller} is in the library as in {smaller}: yes "
            f"(1 other current movement(s) not in {smaller} are kept)") in seeded.stdout.splitlines()
    assert "library matches" not in seeded.stdout
    verified = cli("verify", "--dsn", migrated_db.conninfo, "--file", str(smaller))
    assert verified.code == 1
    assert (f"  library matches {smaller} (the current movements are exactly the file's, each as in "
            "the file): no") in verified.stdout.splitlines()
    assert "  problem: farmers-carry: is a current movement but not in the data file" in verified.stdout
    same = cli("verify", "--dsn", migrated_db.conninfo, "--file", str(CANONICAL), "--json")
    assert json.loads(same.stdout)["file_matches"] is True


# -- a retired slug back in the data file -----------------------------------------------------


def test_a_retired_slug_comes_back_only_as_a_new_version(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    smaller = tmp_path / "smaller.json"
    smaller.write_text(json.dumps([r for r in json.loads(CANONICAL.read_text()) if r["slug"] != "farmers-carry"]))
    seed(migrated_db, smaller, retire=True)
    lines: list[str] = []
    with pytest.raises(DryRunRefused) as refused:  # the dry run says the seed would refuse it
        run_seed(settings(), migrated_db, SeedOptions(data_file=CANONICAL, dry_run=True), lines.append)
    plan = refused.value.plan
    assert isinstance(plan, Plan)
    assert ("  RETIRED    farmers-carry: this slug was retired; it comes back only as a new version "
            "(--new-versions publishes it)") in lines
    assert [(c.slug, c.action) for c in plan.changes if c.status == "retired"] == [("farmers-carry", "blocked")]
    before = table_hashes(migrated_db)
    with pytest.raises(PublishedEditError, match="farmers-carry"):
        seed(migrated_db)
    assert table_hashes(migrated_db) == before
    _, lines = seed(migrated_db, new_versions=True)
    assert "  PUBLISHED farmers-carry v2" in lines
    assert rows(migrated_db, "SELECT version FROM movement_library_current WHERE slug = 'farmers-carry'") == [(2,)]


# -- commands that can be pasted; the target said first ---------------------------------------


def test_the_follow_up_commands_after_a_dsn_seed_can_be_pasted(cli: Cli, migrated_db: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli("seed", "--dsn", migrated_db.conninfo)
    assert result.code == 0, result.output
    tail = result.stdout.split("Run them yourself with:\n", 1)[1].splitlines()
    assert tail[0] == "  (first: export PLANNING_DATABASE_URL='<the DSN you gave --dsn>')"
    commands = tail[1:4]
    assert all(c.startswith('  inv db.psql --dsn env:PLANNING_DATABASE_URL -c "') for c in commands), tail
    assert "***" not in "\n".join(tail)
    pasted = shlex.split(commands[0])  # what a shell does with the line, after the export
    ran = cli(*pasted[1:], env={"PLANNING_DATABASE_URL": migrated_db.conninfo})
    assert ran.code == 0, ran.output
    assert ran.stdout.startswith("target: ") and "40" in ran.stdout


def test_db_psql_prints_its_target_first(cli: Cli, migrated_db: Target) -> None:
    result = cli("db.psql", "--dsn", migrated_db.conninfo, "-c", "SELECT 6 * 7 AS answer")
    assert result.code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("target: postgresql://movelib_test:***@")
    assert "42" in result.stdout


# -- a quiet server log -----------------------------------------------------------------------


def test_migrations_leave_no_error_in_the_server_log(pg18: Server, empty_db: Target) -> None:
    log = pg18.emulator.log_file
    start = log.stat().st_size
    migrate(empty_db, ROOT / "migrations")
    migrate(empty_db, ROOT / "migrations")  # and again, with everything in place
    with log.open("rb") as handle:
        handle.seek(start)
        written = handle.read().decode(errors="replace")
    assert "ERROR" not in written, written
    applied = len([m for m in (ROOT / "migrations").glob("*.sql") if not m.name.endswith(".rollback.sql")])
    assert rows(empty_db, "SELECT count(*) FROM _yoyo_migration") == [(applied,)]


# -- paths in messages ------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "shown"), [
    pytest.param(["validate", "--file", "data/../nope.json"], "nope.json: no such file", id="validate-missing-file"),
    pytest.param(["seed", "--dsn", "postgresql://u@127.0.0.1:1/x", "--file", "data/../README.md"], "README.md:1:1: JSON syntax error", id="seed-invalid-file"),
    pytest.param(["verify", "--dsn", "postgresql://u@127.0.0.1:1/x", "--file", "schemas/../nope.json"], "nope.json: no such file", id="verify-missing-file"),
    pytest.param(["restore", "--dsn", "postgresql://u@127.0.0.1:1/x", "--dump-file", "data/../nope.sql", "--yes"], "nope.sql: no such dump file", id="restore-missing-dump"),
    pytest.param(["data.import", "--source-format", "free-exercise-db", "--source", "data/../nope.json", "--out", "x.json"], "nope.json: no such file", id="import-missing-source"),
])
def test_a_path_is_shown_normalised_and_relative_to_the_working_directory(cli: Cli, argv: list[str], shown: str) -> None:
    result = cli(*argv)
    assert result.code in (1, 2), result.output
    assert shown in result.stderr and "/.." not in result.output and "../" not in result.output, result.output
    assert str(ROOT) not in result.output, result.output  # under the working directory: relative


def test_a_path_outside_the_working_directory_is_shown_absolute_and_normalised(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "sub" / ".." / "synth.json"
    result = cli("data.synth", "--count", "2", "--out", str(out))
    assert result.code == 0, result.output
    assert f"-> {tmp_path / 'synth.json'}" in result.stdout and "/.." not in result.output, result.output
    missing = cli("validate", "--file", str(tmp_path / "sub" / ".." / "nope.json"))
    assert f"{tmp_path / 'nope.json'}: no such file" in missing.stderr, missing.output


HOSTILE = "back-squat\x1b[2J\x1b[41m\x1b]0;owned\x07"  # clear screen, red, a window title, the bell


def test_what_the_database_holds_reaches_the_terminal_escaped_on_every_task(
        cli: Cli, migrated_db: Target, empty_db: Target, tmp_path: Path) -> None:
    """A slug holding ESC, OSC and BEL, written behind the triggers' back: every task that prints
    it (and the server's messages quoting it: the restore of a dump holding it is refused by the
    database, whose DETAIL and CONTEXT quote the row) shows it escaped, never as raw control
    characters."""
    import psycopg

    seed(migrated_db, CANONICAL)
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for table in ("movement_library", "movement_current", "movement_staging", "movement_audit_log"):
            conn.execute(f"UPDATE {table} SET slug = %s WHERE slug = 'back-squat'", (HOSTILE,))
    runs = [cli("verify", "--dsn", migrated_db.conninfo, "--file", str(CANONICAL)),
            cli("seed", "--dry-run", "--dsn", migrated_db.conninfo),
            cli("seed", "--dsn", migrated_db.conninfo),
            cli("diff", "--from", migrated_db.conninfo, "--to", migrated_db.conninfo),
            cli("dump", "--dsn", migrated_db.conninfo, "--output-dir", str(tmp_path))]
    restored = cli("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"), "--dsn", empty_db.conninfo,
                   "--yes")
    assert restored.code != 0 and "back-squat\\x1b[2J" in restored.stderr, restored.output
    runs += [restored, cli("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"), "--dsn",
                           empty_db.conninfo, "--dry-run")]
    said = "".join(r.output for r in runs)
    assert "back-squat\\x1b[2J" in said  # named, escaped
    for raw in ("\x1b", "\x07", "\x9b"):
        assert raw not in said, next(r.output for r in runs if raw in r.output)[-400:]


def test_the_one_door_to_the_terminal_escapes_messages_too(capsys: pytest.CaptureFixture[str]) -> None:
    from invoke.exceptions import Exit

    from movelib.base.errors import RestoreFailed
    from movelib_cli.running import say, user_errors

    say(f"MISSING {HOSTILE}", "a\ttab\nand a line")
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "MISSING back-squat\\x1b[2J" in out
    assert "a\ttab\nand a line" in out  # tabs and line breaks are layout, kept
    with pytest.raises(Exit) as raised, user_errors():
        raise RestoreFailed(f"restore failed:\n  ERROR: duplicate key value\n  DETAIL: Key (slug)=({HOSTILE})")
    assert "\x1b" not in str(raised.value.message) and "\\x07" in str(raised.value.message)
