"""The embedded emulator, driven through `inv db.*` as a user drives it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support import Cli, Server, assert_no_secret, free_port, login, port_open, settings

pytestmark = pytest.mark.usefixtures("cli_env")






@pytest.fixture
def emulators(cli: Cli, cli_overrides: dict[str, str]) -> Iterator[dict[str, str]]:
    """Stops (and purges) both profiles' emulators after the test, whatever happened."""
    yield cli_overrides
    for profile in ("local", "staging"):
        cli("db.down", "--profile", profile, "--purge")


def test_staging_from_nothing_then_idempotent(cli: Cli, emulators: dict[str, str]) -> None:
    port = int(emulators["INVOKE_PROFILES_STAGING_PORT"])
    first = cli("db.up", "--profile", "staging")
    assert first.code == 0, first.output
    assert "staging emulator started (embedded, PostgreSQL 18" in first.stdout
    assert login(port, "athlete_staging", "athlete_planning_staging").startswith("18.")
    again = cli("db.up", "--profile", "staging")
    assert again.code == 0 and "already running" in again.stdout


def test_the_default_profiles_are_the_guides() -> None:
    """The guide's own ports and credentials (the tests themselves run on free ports)."""
    profiles = settings().profiles
    assert profiles["local"].url() == "postgresql://athlete:athlete@127.0.0.1:55432/athlete_planning"
    assert profiles["staging"].url() == (
        "postgresql://athlete:athlete_staging@127.0.0.1:55433/athlete_planning_staging")


def test_both_profiles_run_at_once_and_stop_separately(cli: Cli, emulators: dict[str, str]) -> None:
    local_port = int(emulators["INVOKE_PROFILES_LOCAL_PORT"])
    staging_port = int(emulators["INVOKE_PROFILES_STAGING_PORT"])
    assert cli("db.up").code == 0
    assert cli("db.up", "--profile", "staging").code == 0
    status = cli("db.status")
    assert status.code == 0
    lines = {line.split()[0]: line for line in status.stdout.splitlines()[2:]}
    for name, port in (("local", local_port), ("staging", staging_port)):
        assert f"embedded  {port}  yes" in lines[name]
        assert "18." in lines[name] and "athlete:***@" in lines[name]

    down = cli("db.down", "--profile", "staging")
    assert down.code == 0 and "staging emulator stopped" in down.stdout
    assert not port_open(staging_port)
    assert login(local_port, "athlete", "athlete_planning")
    assert "no " in cli("db.status").stdout.splitlines()[3]


def test_purge_removes_the_data_directory(cli: Cli, emulators: dict[str, str]) -> None:
    data = Path(emulators["INVOKE_EMULATOR_DIR"]) / "local"
    assert cli("db.up").code == 0 and (data / "pgdata" / "PG_VERSION").exists()
    assert cli("db.down").code == 0 and data.exists()  # plain down keeps the data
    purge = cli("db.down", "--purge")
    assert purge.code == 0 and "data deleted" in purge.stdout
    assert not data.exists()


def test_data_survives_down_and_up(cli: Cli, emulators: dict[str, str]) -> None:
    port = int(emulators["INVOKE_PROFILES_LOCAL_PORT"])
    assert cli("db.up").code == 0
    with psycopg.connect(host="127.0.0.1", port=port, user="athlete", password="athlete",
                         dbname="athlete_planning", autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    assert cli("db.down").code == 0
    assert cli("db.up").code == 0
    with psycopg.connect(host="127.0.0.1", port=port, user="athlete", password="athlete",
                         dbname="athlete_planning") as conn:
        assert conn.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone() == (True,)


def test_port_held_by_another_process_is_named(cli: Cli, emulators: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = cli("db.up", env={"INVOKE_PROFILES_LOCAL_PORT": str(port)})
    assert result.code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.output


def test_url_masks_unless_revealed(cli: Cli) -> None:
    masked = cli("db.url", "--profile", "staging")
    assert masked.code == 0 and ":***@127.0.0.1:" in masked.stdout
    revealed = cli("db.url", "--profile", "staging", "--reveal")
    assert ":athlete_staging@127.0.0.1:" in revealed.stdout


def test_logs_and_psql(cli: Cli, emulators: dict[str, str]) -> None:
    assert "has not run" in cli("db.logs").stdout
    assert cli("db.up").code == 0
    assert "ready to accept connections" in cli("db.logs").stdout
    result = cli("db.psql", "-c", "SELECT 40 + 2 AS answer")
    assert result.code == 0 and "42" in result.stdout


def test_pg15_binaries_can_serve_instead(cli: Cli, emulators: dict[str, str], pg15_bin: Path) -> None:
    env = {"INVOKE_EMULATOR_BIN_DIR": str(pg15_bin)}
    port = int(emulators["INVOKE_PROFILES_LOCAL_PORT"])
    try:
        up = cli("db.up", env=env)
        assert up.code == 0, up.output
        assert "PostgreSQL 15." in up.stdout
        assert login(port, "athlete", "athlete_planning").startswith("15.")
    finally:
        cli("db.down", "--purge", env=env)


def test_a_bin_dir_without_postgres_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("db.up", env={"INVOKE_EMULATOR_BIN_DIR": str(tmp_path)})
    assert result.code == 2 and "no PostgreSQL server programs" in result.stderr


def test_unknown_backend_is_refused(cli: Cli) -> None:
    result = cli("db.up", "--backend", "podman")
    assert result.code == 2 and "choose one of auto, embedded, docker" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        pytest.param("postgresql://athlete:wrong@127.0.0.1:{port}/athlete_planning",
                     "refused the user name or password", id="wrong-password"),
        pytest.param("postgresql://athlete:wrong@localhost:{dead}/athlete_planning",
                     "try 127.0.0.1 instead of localhost", id="dead-port"),
    ],
)
def test_connection_failures_are_one_readable_message(cli: Cli, emulators: dict[str, str], dsn: str, expected: str) -> None:
    port = int(emulators["INVOKE_PROFILES_LOCAL_PORT"])
    assert cli("db.up").code == 0
    result = cli("migrate", "--dsn", dsn.format(port=port, dead=free_port()))
    assert result.code == 2
    assert expected in result.stderr
    assert "athlete:***@" in result.stderr
    assert "Traceback" not in result.output and "wrong" not in result.output


def test_sentinel_password_never_appears(cli: Cli, pg18: Server) -> None:
    good = pg18.dsn("movelib_template")
    bad_password = pg18.dsn("movelib_template").replace(":Sx%40", ":Sy%40")
    dead = good.replace(f":{pg18.port}/", f":{free_port()}/")
    outputs = [
        cli("migrate", "--dsn", good),
        cli("verify", "--dsn", good),
        cli("migrate", "--dsn", bad_password),
        cli("migrate", "--dsn", dead),
        cli("seed", "--dsn", dead),
        cli("verify", "--dsn", good.replace("/movelib_template", "/nope")),
        cli("migrate", env={"PLANNING_DATABASE_URL": dead}),
        cli("db.status"),
    ]
    for result in outputs:
        assert "Traceback" not in result.output
        assert_no_secret(result.output)
