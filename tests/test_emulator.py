"""The embedded emulator, driven through `inv db.*` as a user drives it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg
import pytest
from conftest import PG15_BIN, assert_no_secret, free_port

pytestmark = pytest.mark.usefixtures("cli_env")


def login(port: int, password: str, db: str) -> str:
    with psycopg.connect(host="127.0.0.1", port=port, user="athlete", password=password,
                         dbname=db, connect_timeout=3) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return str(row[0])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def emulators(cli, cli_env):  # type: ignore[no-untyped-def]
    """Stops (and purges) both profiles' emulators after the test, whatever happened."""
    yield cli_env
    for profile in ("local", "staging"):
        cli("db.down", "--profile", profile, "--purge")


def test_staging_from_nothing_then_idempotent(cli, emulators) -> None:  # type: ignore[no-untyped-def]
    port = int(emulators["INVOKE_PROFILES_STAGING_PORT"])
    started = time.monotonic()
    first = cli("db.up", "--profile", "staging")
    cold = time.monotonic() - started
    assert first.code == 0, first.output
    assert "staging emulator started (embedded, PostgreSQL 18" in first.stdout
    assert login(port, "athlete_staging", "athlete_planning_staging").startswith("18.")
    assert cold <= 5, f"cold start took {cold:.2f} s"

    started = time.monotonic()
    again = cli("db.up", "--profile", "staging")
    warm = time.monotonic() - started
    assert again.code == 0 and "already running" in again.stdout
    assert warm <= 1, f"second db.up took {warm:.2f} s"


def test_default_staging_port_is_55433(cli, emulators) -> None:  # type: ignore[no-untyped-def]
    """The guide's own port and credentials, not a test port."""
    if port_open(55433):
        pytest.fail("port 55433 is busy on this machine; stop what holds it to run this test")
    env = {"INVOKE_PROFILES_STAGING_PORT": "55433"}
    try:
        assert cli("db.up", "--profile", "staging", env=env).code == 0
        assert login(55433, "athlete_staging", "athlete_planning_staging")
    finally:
        cli("db.down", "--profile", "staging", "--purge", env=env)


def test_both_profiles_run_at_once_and_stop_separately(cli, emulators) -> None:  # type: ignore[no-untyped-def]
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


def test_purge_removes_the_data_directory(cli, emulators) -> None:  # type: ignore[no-untyped-def]
    data = Path(emulators["INVOKE_EMULATOR_DIR"]) / "local"
    assert cli("db.up").code == 0 and (data / "pgdata" / "PG_VERSION").exists()
    assert cli("db.down").code == 0 and data.exists()  # plain down keeps the data
    purge = cli("db.down", "--purge")
    assert purge.code == 0 and "data deleted" in purge.stdout
    assert not data.exists()


def test_data_survives_down_and_up(cli, emulators) -> None:  # type: ignore[no-untyped-def]
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


def test_port_held_by_another_process_is_named(cli, emulators) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = cli("db.up", env={"INVOKE_PROFILES_LOCAL_PORT": str(port)})
    assert result.code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.output


def test_url_masks_unless_revealed(cli) -> None:  # type: ignore[no-untyped-def]
    masked = cli("db.url", "--profile", "staging")
    assert masked.code == 0 and ":***@127.0.0.1:" in masked.stdout
    revealed = cli("db.url", "--profile", "staging", "--reveal")
    assert ":athlete_staging@127.0.0.1:" in revealed.stdout


def test_logs_and_psql(cli, emulators) -> None:  # type: ignore[no-untyped-def]
    assert "has not run" in cli("db.logs").stdout
    assert cli("db.up").code == 0
    assert "ready to accept connections" in cli("db.logs").stdout
    result = cli("db.psql", "-c", "SELECT 40 + 2 AS answer")
    assert result.code == 0 and "42" in result.stdout


def test_pg15_binaries_can_serve_instead(cli, emulators) -> None:  # type: ignore[no-untyped-def]
    env = {"INVOKE_EMULATOR_BIN_DIR": str(PG15_BIN)}
    port = int(emulators["INVOKE_PROFILES_LOCAL_PORT"])
    try:
        up = cli("db.up", env=env)
        assert up.code == 0, up.output
        assert "PostgreSQL 15." in up.stdout
        assert login(port, "athlete", "athlete_planning").startswith("15.")
    finally:
        cli("db.down", "--purge", env=env)


def test_a_bin_dir_without_postgres_is_a_clear_error(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = cli("db.up", env={"INVOKE_EMULATOR_BIN_DIR": str(tmp_path)})
    assert result.code == 1 and "no PostgreSQL server programs" in result.stderr


def test_unknown_backend_is_refused(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("db.up", "--backend", "podman")
    assert result.code == 1 and "choose one of auto, embedded, docker" in result.stderr
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
def test_connection_failures_are_one_readable_message(cli, emulators, dsn, expected) -> None:  # type: ignore[no-untyped-def]
    port = int(emulators["INVOKE_PROFILES_LOCAL_PORT"])
    assert cli("db.up").code == 0
    result = cli("migrate", "--dsn", dsn.format(port=port, dead=free_port()))
    assert result.code == 1
    assert expected in result.stderr
    assert "athlete:***@" in result.stderr
    assert "Traceback" not in result.output and "wrong" not in result.output


def test_sentinel_password_never_appears(cli, pg18) -> None:  # type: ignore[no-untyped-def]
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
