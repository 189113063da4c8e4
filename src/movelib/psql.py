"""Running PostgreSQL's command-line tools against a target without exposing its password."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .emulator.pgbin import EXE, resolve_bin_dir
from .errors import ConfigError
from .target import Target


def tool_path(name: str, bin_dir: str | None) -> Path:
    """``psql``, ``pg_dump``...: from the configured bin directory, else the embedded wheel."""
    path = resolve_bin_dir(bin_dir) / f"{name}{EXE}"
    if not path.is_file():
        raise ConfigError(f"{name} is not in {path.parent}")
    return path


def child_env(target: Target) -> dict[str, str]:
    """Our environment plus the target's libpq variables (password in PGPASSWORD, not argv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(target.libpq_env())
    env["PGCLIENTENCODING"] = "UTF8"  # as movelib's own connections (SQL_ASCII databases)
    return env


def run_psql(
    target: Target, bin_dir: str | None, args: Sequence[str] = (), *, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run psql on ``target``; interactive unless ``capture``."""
    cmd = [str(tool_path("psql", bin_dir)), "--no-psqlrc", *args]
    return subprocess.run(
        cmd,
        env=child_env(target),
        text=True,
        capture_output=capture,
        check=False,
    )
