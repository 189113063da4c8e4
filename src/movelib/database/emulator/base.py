"""What every emulator backend reports, and the port checks they share."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from ...base.defaults import CLIENT_ENCODING
from ...base.errors import PortInUse
from ..profiles import Profile
from ..target import mask_conninfo


@dataclass(frozen=True)
class EmulatorStatus:
    profile: str
    backend: str
    port: int
    running: bool
    server_version: str
    dsn: str  # masked
    detail: str = ""
    reason: str = ""  # why this backend (auto's rule, or the setting)


def status_lines(statuses: list[EmulatorStatus]) -> list[str]:
    """``inv db.status``: one row per profile; the note says what is wrong and why the backend."""
    from ...base.report import table

    return table(["profile", "backend", "port", "running", "version", "dsn", "note"],
                 [[s.profile, s.backend, str(s.port), "yes" if s.running else "no",
                   s.server_version, s.dsn, "; ".join(n for n in (s.detail, s.reason) if n)]
                  for s in statuses])


def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts a TCP connection on ``host:port`` (whoever it is)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_taken(port: int) -> str:
    """``db.status``'s note for a stopped emulator: who holds its port, or nothing."""
    if port_is_free("127.0.0.1", port):
        return ""
    return f"port {port} is taken by {port_holder(port)}"


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (we can bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As PostgreSQL does: a port whose last connections linger in TIME_WAIT is free.
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), errno.EACCES):
                return False
            raise
    return True


def port_holder(port: int) -> str:
    """Best effort: which process listens on ``port`` (needs rights to see it)."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    return "a process of another user"
                proc = psutil.Process(conn.pid)
                return f"{proc.name()} (pid {conn.pid})"
    except Exception:
        pass
    return "another process"


def port_in_use(profile: Profile, holder: str) -> PortInUse:
    return PortInUse(
        f"port {profile.port} on 127.0.0.1 is already in use by {holder}, so the {profile.name} "
        f"emulator cannot listen there. Stop that, or give the profile another port "
        f"(INVOKE_PROFILES_{profile.name.upper()}_PORT=...)"
    )


def query_server_version(profile: Profile) -> tuple[str, str]:
    """(version, problem): log in as the profile and ask the server its version."""
    import psycopg

    from ..tables import server_version

    try:
        with psycopg.connect(profile.url(), connect_timeout=3, client_encoding=CLIENT_ENCODING) as conn:
            return server_version(conn), ""
    except psycopg.Error as exc:
        from ...base import secrets

        return "?", secrets.redact(" ".join(str(exc).split()))


def masked_profile_dsn(profile: Profile) -> str:
    return mask_conninfo(profile.url())
