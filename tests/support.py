"""What tests share: the test servers, the ways to run `inv`, and checks on what a run left.

Fixtures live in ``conftest.py``; everything a test imports by name lives here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any, Protocol
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from movelib.database.emulator.embedded import EmbeddedEmulator
from movelib.database.settings import Settings
from movelib.database.target import Target
from movelib.seed.workflow import SeedOptions, SeedOutcome, run_seed

ROOT = Path(__file__).resolve().parent.parent
CANONICAL = ROOT / "data" / "movements-canonical.json"
NO_SIGNERS = Path(__file__).resolve().parent / "empty_allowed_signers"  # the signers tests trust by default
SCHEMA = ROOT / "schemas" / "movement.schema.json"
FREE_EXERCISE_DB = ROOT / "data" / "free-exercise-db" / "exercises.json"
PG15_BIN = Path(os.environ.get("MOVELIB_TEST_PG15_BIN", "/usr/lib/postgresql/15/bin"))
# Every migration of the checkout, in order (their names, as yoyo records them).
MIGRATION_NAMES = [p.name.removesuffix(".sql") for p in sorted((Path(__file__).resolve().parent.parent / "migrations").glob("*.sql"))]
SENTINEL_PASSWORD = "Sx@:/%#?&= p4ss"
TEST_USER = "movelib_test"
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
# Environment variables of the developer's shell that would point a run elsewhere.
FOREIGN_ENV = ("PG", "INVOKE_", "PLANNING_")


# -- prerequisites ----------------------------------------------------------------------------

# What a test may need beyond Python, with the marker that selects it. CI lists them in
# MOVELIB_REQUIRE (comma-separated, or "all"): a missing one then fails instead of skipping.
PREREQUISITES = {
    "pg15": "PostgreSQL 15 server binaries",
    "docker": "a Docker engine with the test image",
    "posix": "a POSIX system (signals, #!/bin/sh scripts, file modes)",
    "linux": "Linux (/proc, fork)",
    "ssh": "ssh-keygen (openssh-client, OpenSSH 8.2+; git for Windows ships it)",
    "immutable": "chattr +i (root, on ext4, xfs or btrfs), what a file held open is on Windows",
    "windows": "Windows (files held open, the console, cmd.exe)",
    "pgbouncer": "PgBouncer (apt-get install pgbouncer), the transaction pooler managed services put in front",
}


# "all" is what .ci/run says on Linux: every prerequisite but another platform.
OTHER_PLATFORMS = {"windows"}


def required(name: str) -> bool:
    wanted = {w.strip() for w in os.environ.get("MOVELIB_REQUIRE", "").split(",") if w.strip()}
    return name in wanted or ("all" in wanted and name not in OTHER_PLATFORMS)


def require(name: str, available: bool, reason: str) -> None:
    """Skip the test when ``name`` is missing (with ``reason``); fail instead when CI requires it."""
    if available:
        return
    message = f"needs {PREREQUISITES[name]}: {reason}"
    if required(name):
        pytest.fail(f"{message} (MOVELIB_REQUIRE lists {name!r})")
    pytest.skip(message)


def require_docker(image: str | None = None) -> Any:
    """A docker-py client of an engine that answers (and has ``image``), through movelib's own
    probe (which keeps docker-py's leaked socket from failing a later test); skip, or fail
    where MOVELIB_REQUIRE lists docker, when there is none."""
    from movelib.base.errors import BackendUnavailable
    from movelib.database.emulator.container import docker_client

    try:
        client = docker_client(timeout=5)
    except BackendUnavailable as exc:
        require("docker", False, str(exc))
    if image is not None:
        _wait_for_image_build()
        try:
            client.images.get(image)
        except Exception as exc:  # ImageNotFound, or the engine went away
            client.close()
            require("docker", False, f"the Docker engine has no image {image} "
                                     f"({str(exc).splitlines()[0][:120]}); run "
                                     "compose/local-image/build.sh")
    return client


def _wait_for_image_build() -> None:
    """`.ci/run` builds the test image beside the run and writes the build's exit status to the
    file ``MOVELIB_TEST_DOCKER_IMAGE_BUILD`` names when it ends: wait for it (a failed build is
    this test's failure, with the build's log)."""
    status = os.environ.get("MOVELIB_TEST_DOCKER_IMAGE_BUILD")
    if not status:
        return
    path = Path(status)
    deadline = time.monotonic() + 900
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(1)
    code = path.read_text().strip() if path.exists() else "still building after 15 minutes"
    if code != "0":
        log = Path(f"{status}.log")
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        require("docker", False, f"building the test image failed ({code}):\n{tail}")


def require_posix() -> None:
    require("posix", os.name == "posix", f"this is {sys.platform}")


def require_windows() -> None:
    require("windows", sys.platform == "win32", f"this is {sys.platform}")


def require_linux() -> None:
    require("linux", sys.platform == "linux" and Path("/proc/self").is_dir(), f"this is {sys.platform}")


# -- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


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
        with self.admin() as conn:  # a file copy: ~10x faster than WAL-logging every block
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)))
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def login(port: int, password: str, db: str, user: str = "athlete") -> str:
    """Log in as a user would; the server's version."""
    with psycopg.connect(host="127.0.0.1", port=port, user=user, password=password,
                         dbname=db, connect_timeout=3) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return str(row[0])


def scalar(target: Target, query: str) -> Any:
    with psycopg.connect(target.conninfo) as conn:
        row = conn.execute(query).fetchone()
        return row[0] if row else None


def rows(target: Target, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(target.conninfo) as conn:
        return conn.execute(query).fetchall()


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


def library_state(target: Target) -> list[tuple[Any, ...]]:
    """The library as content, whatever its ids: each version's slug, version, content hash,
    state and the current pointer's version. Equal on two databases that hold the same release,
    however each came to hold it (a restore merges into the target's own ids)."""
    return rows(target, """
        SELECT v.slug, v.version, v.content_hash, v.state, c.version
          FROM movement_library_versions v LEFT JOIN movement_current c ON c.slug = v.slug
         ORDER BY convert_to(v.slug, 'UTF8'), v.version""")


def ids_by_version(target: Target) -> dict[tuple[str, int], int]:
    """Each library version's id, by (slug, version)."""
    return {(s, v): i for s, v, i in rows(target, "SELECT slug, version, id FROM movement_library")}


def restore_connected(stdout: str) -> bool:
    """Whether `inv restore` reached its target: it prints the target first, then checks the dump
    and its signature, and shows the target's current row counts only once it has connected."""
    return any(line.startswith("  movement_") and " now " in line for line in stdout.splitlines())


def assert_no_secret(text: str) -> None:
    for spelling in {SENTINEL_PASSWORD, quote(SENTINEL_PASSWORD, safe=""),
                     quote(SENTINEL_PASSWORD), "p4ss"}:
        assert spelling not in text, f"password leaked as {spelling!r}"


# -- running `inv` ----------------------------------------------------------------------------


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Cli(Protocol):
    def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult: ...


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Settings for `inv` that cannot touch the developer's emulators, ports or .env."""
    return {
        "INVOKE_PATHS_DOTENV": str(tmp_path / "no.env"),
        "INVOKE_EMULATOR_DIR": str(tmp_path / "emulators"),
        "INVOKE_EMULATOR_BACKEND": "embedded",
        "INVOKE_PROFILES_LOCAL_PORT": str(free_port()),
        "INVOKE_PROFILES_STAGING_PORT": str(free_port()),
        "INVOKE_PATHS_ALLOWED_SIGNERS": str(NO_SIGNERS),  # not the project's: tests trust no one
    }


def process_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the developer's targets, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    env.update(overrides)
    return env


def namespace(root: Path = ROOT) -> Any:
    """The project's invoke namespace, freshly loaded from ``root``'s tasks.py (invoke consumes
    a task's help texts while it parses, so no two runs may share one): a new module each time,
    run from the file's code compiled once (per content: a test may write its own tasks.py)."""
    path = root / "tasks.py"
    source = path.read_bytes()
    code = _TASKS_CODE.get((path, source))
    if code is None:
        code = _TASKS_CODE[(path, source)] = compile(source, str(path), "exec", dont_inherit=True)
    spec = importlib.util.spec_from_file_location("movelib_project_tasks", path)
    assert spec
    module = importlib.util.module_from_spec(spec)
    exec(code, module.__dict__)
    return module.ns


_TASKS_CODE: dict[tuple[Path, bytes], CodeType] = {}  # each tasks.py's code, by path and content


class InProcessCli:
    """`inv ARGS` run by invoke's own ``Program`` inside the test process.

    The same parser, configuration loading (``INVOKE_*`` from the environment), task bodies and
    exit codes as the `inv` command, without a new interpreter: the environment is swapped for
    the call, the working directory is the project root, nothing is on stdin, and the password
    registry starts empty as in a new process. Output is captured at the file-descriptor level,
    so child processes (psql) are captured too. ``root`` is the checkout whose tasks.py runs
    (a copy of the project's, for a task that writes into its checkout: ``inv release``).
    """

    def __init__(self, env: Mapping[str, str], capfd: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch, root: Path = ROOT) -> None:
        self.env = dict(env)
        self.capfd = capfd
        self.monkeypatch = monkeypatch
        self.root = root

    def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        from invoke import __version__ as invoke_version

        from movelib.base import secrets
        from movelib_cli.program import MovelibProgram

        self.capfd.readouterr()  # what the test printed before is not this run's output
        with self.monkeypatch.context() as patch:
            for key in os.environ:
                if key.startswith(FOREIGN_ENV):
                    patch.delenv(key)
            for key, value in {**self.env, **(env or {})}.items():
                patch.setenv(key, value)
            patch.chdir(self.root)
            patch.setattr(sys, "stdin", io.StringIO())  # no terminal, nothing to read
            patch.setattr(secrets, "_secrets", set())
            program = MovelibProgram(namespace=namespace(self.root), name="Invoke", binary="inv[oke]",
                              version=invoke_version)
            code = 0
            try:
                program.run(["inv", *args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = self.capfd.readouterr()
        return CliResult(code, out, err)


def run_inv(env: Mapping[str, str], *args: str, timeout: float = 300) -> CliResult:
    """`inv ARGS` as a new process: for what needs a real process boundary."""
    proc = subprocess.run(
        [sys.executable, "-m", "movelib_cli", *args], cwd=ROOT, env=process_env(env),
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def start_inv(env: Mapping[str, str], *args: str) -> subprocess.Popen[str]:
    """`inv ARGS` started in the background (to be killed, or to race another)."""
    return subprocess.Popen([sys.executable, "-m", "movelib_cli", *args], cwd=ROOT,
                            env=process_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


@contextlib.contextmanager
def database(server: Server, template: str = "template0") -> Iterator[str]:
    """A throw-away database on ``server`` (its name)."""
    name = server.create_database(template)
    try:
        yield name
    finally:
        server.drop_database(name)


# -- seeding ----------------------------------------------------------------------------------


def settings() -> Settings:
    """The project's default settings (as `inv` has them with no configuration), trusting no
    signer: never the project's own allowed_signers, which gains a line per real signer."""
    return Settings.from_mapping({"paths": {"allowed_signers": str(NO_SIGNERS)}}, ROOT)


def seed_run(target: Target, data_file: Path = CANONICAL,
             **options: Any) -> tuple[SeedOutcome, list[str]]:
    """``inv seed`` through the package: the outcome and the lines it printed."""
    lines: list[str] = []
    outcome = run_seed(settings(), target, SeedOptions(data_file=data_file, **options), lines.append)
    return outcome, lines


def seed(target: Target, data_file: Path = CANONICAL, **options: Any) -> list[str]:
    """``inv seed`` through the package: the lines it printed."""
    return seed_run(target, data_file, **options)[1]


# -- signed releases --------------------------------------------------------------------------

SIGNER = "re@example.com"
KEY_TYPES = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa-nistp256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa-nistp384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa-nistp521": ["-t", "ecdsa", "-b", "521"],
    "rsa": ["-t", "rsa", "-b", "3072"],
}


def make_key(folder: Path, name: str = "release", kind: str = "ed25519") -> Path:
    """A fresh private key without a passphrase; its public half is ``<key>.pub``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", *KEY_TYPES[kind], "-N", "", "-C", f"{name}@laptop", "-f", str(key)],
                   check=True, capture_output=True)
    return key


def public(key: Path) -> str:
    """``key-type base64`` of the key's public half."""
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def allowed_signers(folder: Path, *lines: str) -> Path:
    path = folder / "allowed_signers"
    path.write_text("# test signers\n" + "".join(f"{line}\n" for line in lines))
    return path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def pin_key(target: Target, key: Path, principal: str = SIGNER) -> None:
    """Pin ``key``'s public half in ``target`` (a production target's restores trust it)."""
    from movelib.database.guard import Permission
    from movelib.ship.trust import pin

    pin(target, Path(f"{key}.pub"), principal, permission=Permission(True, target.dbname))


def signed_release(dump_file: Path, folder: Path, pinned_in: Target | None = None) -> dict[str, str]:
    """Sign ``dump_file``'s manifest with a new key; the `inv` settings that trust that key
    (and, with ``pinned_in``, the key pinned in that production database)."""
    from movelib.ship.manifest import manifest_path
    from movelib.ship.signing import sign_file

    key = make_key(folder / "keys")
    sign_file(manifest_path(dump_file), key)
    if pinned_in is not None:
        pin_key(pinned_in, key)
    trusted = allowed_signers(folder / "keys", f"{SIGNER} {public(key)}")
    return {"INVOKE_PATHS_ALLOWED_SIGNERS": str(trusted)}


# -- roles that are no superuser ----------------------------------------------------------------

# What a DBA puts on an application role, short enough that movelib's own statements at 20k
# movements outlast it (the test that uses it proves so)
ROLE_LIMITS = {"statement_timeout": "200ms", "idle_in_transaction_session_timeout": "200ms",
               "lock_timeout": "200ms"}


@contextlib.contextmanager
def role(server: Server, *, limits: bool = False) -> Iterator[str]:
    """A login role that is no superuser, with the test password; dropped afterwards."""
    name = f"app_{uuid.uuid4().hex[:10]}"
    with server.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}")
                     .format(sql.Identifier(name), sql.Literal(SENTINEL_PASSWORD)))
        if limits:
            for setting, value in ROLE_LIMITS.items():
                conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(
                    sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)))
    try:
        yield name
    finally:
        with server.admin() as conn:
            for row in conn.execute("SELECT datname FROM pg_database d JOIN pg_roles r "
                                    "ON r.oid = d.datdba WHERE r.rolname = %s", (name,)).fetchall():
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(row[0])))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def dsn_as(server: Server, user: str, dbname: str) -> str:
    return (f"postgresql://{user}:{quote(SENTINEL_PASSWORD, safe='')}@127.0.0.1:{server.port}/"
            f"{dbname}")


def owned_database(server: Server, owner: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with server.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(name), sql.Identifier(owner)))
    return name


# -- a stand-in for a database that only counts ---------------------------------------------------


class ConnectionCounter:
    """A TCP listener standing in for a database: it counts who tries to connect."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()
