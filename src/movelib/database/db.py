"""Connections to a target, with libpq's failures turned into messages a user can act on."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, cast

import psycopg
from psycopg import sql

from ..base import secrets
from ..base.defaults import CLIENT_ENCODING, DDL_LOCK_TRY
from ..base.errors import (
    AuthenticationFailed,
    DatabaseError,
    DatabaseMissing,
    InvalidTarget,
    LockTimeout,
    TargetUnreachable,
    TlsRefused,
)
from .target import Target

CONNECT_TIMEOUT = 5
APPLICATION = "movelib"
# One advisory lock key for every task that writes to a target (per database, as
# PostgreSQL scopes advisory locks to the current database).
LOCK_KEY = 0x6D6F76656C6962  # "movelib"


def _hint(target: Target) -> str:
    if target.profile is not None:
        return (
            f"is the emulator running? `inv db.status`, then `inv db.up --profile "
            f"{target.profile.name}`"
        )
    return "is the server running, and is the DSN right?"


def connect(target: Target, *, task: str = "", autocommit: bool = False) -> psycopg.Connection:
    """Open a connection to ``target`` or raise an error that says what to try."""
    app = f"{APPLICATION} {task}".strip()
    try:
        return psycopg.connect(
            target.conninfo,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=app[:63],
            autocommit=autocommit,
            client_encoding=CLIENT_ENCODING,
            # no automatic prepared statements: behind a transaction pooler (PgBouncer before
            # 1.21) the next transaction may run on a server connection where "_pg3_0"
            # is another client's, or does not exist
            prepare_threshold=None,
        )
    except psycopg.OperationalError as exc:
        raise translate_connect_error(target, exc) from None


def rows(conn: psycopg.Connection, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Every row of ``query`` (with ``params``), fetched at once: for the small answers of checks."""
    return conn.execute(query, params or None).fetchall()


STREAM_ROWS = 10_000  # rows received at a time


@contextmanager
def stream(conn: psycopg.Connection, query: str | sql.Composed,
           params: tuple[object, ...] = ()) -> Iterator[Iterator[tuple[Any, ...]]]:
    """``with stream(conn, query) as rows:`` the rows of ``query`` as the server sends them,
    :data:`STREAM_ROWS` at a time (libpq's chunked rows; one at a time before libpq 17): memory
    stays flat however many rows there are, and the server may run the query in parallel,
    which it never does for a server-side cursor (a diff of two 1M libraries took 56 s through
    cursors, 26 s so). Runs in the caller's transaction (a savepoint) or, on an autocommit
    connection, in one of its own. The connection is busy until the rows are read: no other
    statement on it inside the block. Left before the last row, the query is cancelled and the
    savepoint rolled back."""
    size = STREAM_ROWS if psycopg.pq.version() >= 170000 else 1
    with conn.transaction():
        # a generator (psycopg says Iterator): close() cancels what is left of the query
        rows = cast("Generator[tuple[Any, ...], None, None]",
                    conn.cursor().stream(query, params, size=size))
        read = _Exhausted(rows)
        try:
            yield read
        finally:
            rows.close()  # cancels the query if rows are left
        if not read.done:
            raise psycopg.Rollback  # the cancelled query failed the savepoint: back out of it


class _Exhausted(Iterator[tuple[Any, ...]]):
    """``rows``, and whether the last of them was read."""

    def __init__(self, rows: Iterator[tuple[Any, ...]]) -> None:
        self.rows = rows
        self.done = False

    def __next__(self) -> tuple[Any, ...]:
        try:
            return next(self.rows)
        except StopIteration:
            self.done = True
            raise


def translate_connect_error(target: Target, exc: Exception) -> Exception:
    detail = secrets.redact(" ".join(str(exc).split()))
    where = target.describe()
    lowered = detail.lower()
    if "invalid" in lowered and ("value" in lowered or "connection option" in lowered):
        return InvalidTarget(
            f"the DSN of {where} is not valid: {detail.removeprefix('connection is bad: ')}.\n"
            "  fix that parameter (libpq's documentation lists each one and its values)")
    tls = _tls_problem(target, lowered)
    if tls is not None:
        return TlsRefused(f"cannot reach {where} over TLS: {tls}\n  (libpq said: {detail})")
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return AuthenticationFailed(
            f"cannot log in to {where}: the server refused the user name or password.\n"
            "  check the credentials in the DSN, PLANNING_DATABASE_URL or the profile "
            "(percent-encode @ : / % # in a password inside a URL)"
        )
    if "does not exist" in lowered and "database" in lowered:
        return DatabaseMissing(
            f"the database of {where} does not exist on that server.\n"
            "  create it (createdb), or check the database name in the DSN"
        )
    host_hint = ""
    if "localhost" in target.params.get("host", ""):
        host_hint = "\n  try 127.0.0.1 instead of localhost (Windows resolves it to ::1 first)"
    return TargetUnreachable(
        f"cannot reach {where}.\n"
        f"  {_hint(target)}{host_hint}\n"
        "  check the host, the port and any firewall between here and the server\n"
        f"  (libpq said: {detail})"
    )


def _root_cert(target: Target) -> str:
    """Where libpq takes the CA from for ``target``: the DSN, PGSSLROOTCERT, or its default."""
    return (target.params.get("sslrootcert") or os.environ.get("PGSSLROOTCERT")
            or "~/.postgresql/root.crt (libpq's default; set sslrootcert)")


def _tls_problem(target: Target, lowered: str) -> str | None:
    """What went wrong with TLS, in words a user can act on; None when it was not TLS."""
    if "certificate verify failed" in lowered:
        return (f"the server's certificate is not signed by {_root_cert(target)}.\n"
                "  give sslrootcert the CA that signed the server's certificate (your provider "
                "publishes it), or sslrootcert=system for the system's trusted roots")
    if "does not match host name" in lowered:
        return ("the server's certificate does not name the host in the DSN (sslmode="
                "verify-full checks it).\n  connect by the name on the certificate, or ask "
                "for a certificate that names this host")
    if "root certificate file" in lowered and "does not exist" in lowered:
        return (f"sslmode={target.params.get('sslmode', os.environ.get('PGSSLMODE', ''))} "
                f"verifies the server's certificate, but there is no CA file at "
                f"{_root_cert(target)}.\n  set sslrootcert to the CA's certificate file")
    if "server does not support ssl" in lowered:
        return ("the server does not offer TLS, and the DSN requires it (sslmode).\n  check "
                "the host and port (a pooler or proxy may sit in front of the server)")
    if "no encryption" in lowered and "pg_hba.conf" in lowered:
        return ("the server accepts this user only over TLS (hostssl), and this connection "
                "was not encrypted.\n  add sslmode=require (or verify-full with sslrootcert) "
                "to the DSN")
    if "ssl support is not compiled in" in lowered:
        return "this libpq was built without TLS support"
    if "certificate" in lowered and ("client" in lowered or "sslcert" in lowered):
        return ("the server asked for a client certificate this connection did not give or "
                "that it refused.\n  set sslcert and sslkey (or PGSSLCERT, PGSSLKEY)")
    return None


def raise_sql_error(target: Target, exc: psycopg.Error, doing: str) -> None:
    """Re-raise a driver error during ``doing`` as a :class:`DatabaseError`."""
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        raise TargetUnreachable(
            f"lost the connection to {target.describe()} while {doing}; nothing was "
            f"committed by this step. Retry once the server is back.\n"
            f"  (libpq said: {secrets.redact(' '.join(str(exc).split()))})"
        ) from None
    text = secrets.redact(str(exc).strip())
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        raise LockTimeout(
            f"{doing} on {target.describe()} waited longer than --lock-timeout for a lock held "
            f"by another session and was rolled back: {text}") from None
    raise DatabaseError(f"{doing} failed on {target.describe()}: {text}") from None


def limits_off(conn: psycopg.Connection) -> str:
    """The role's limits meant for the application's queries, turned off for this transaction.

    DBAs and managed services set ``statement_timeout`` (and its kin) on application roles; a
    100k-row COPY or verification is one long statement, and the human typing a confirmation
    leaves the transaction idle. ``pg_dump`` turns the same settings off for its session;
    movelib does it with ``set_config(..., true)``, which ends with the transaction, so nothing
    outlives it on a pooled server connection.
    """
    names = ["statement_timeout", "idle_in_transaction_session_timeout"]
    if conn.info.server_version >= 170000:
        names.append("transaction_timeout")
    return ", ".join(f"set_config('{name}', '0', true)" for name in names)


@contextmanager
def work(conn: psycopg.Connection, *, read_only: bool = False) -> Iterator[None]:
    """One movelib transaction on the autocommit ``conn``: the role's statement and idle limits
    off inside it (:func:`limits_off`), and with ``read_only`` one REPEATABLE READ, READ ONLY
    snapshot, rolled back at the end. Nothing is set for the session: safe behind a pooler."""
    with conn.transaction(force_rollback=read_only):
        if read_only:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(f"SELECT {limits_off(conn)}")
        yield


@contextmanager
def work_mem(conn: psycopg.Connection, size: str) -> Iterator[None]:
    """The statements inside with ``size`` of ``work_mem`` (their sorts and hashes in memory
    rather than through disk), in a savepoint of the caller's transaction, or a transaction of
    their own on an autocommit connection. The setting before is put back after them: a
    released savepoint keeps a ``SET LOCAL`` to the end of the transaction (a restore's)."""
    with conn.transaction():
        row = conn.execute("SELECT current_setting('work_mem'), set_config('work_mem', %s, true)",
                           (size,)).fetchone()
        yield
        conn.execute("SELECT set_config('work_mem', %s, true)", (row[0] if row else None,))


@contextmanager
def locked(
    conn: psycopg.Connection, target: Target, *, task: str, timeout: float
) -> Iterator[None]:
    """One transaction on the autocommit ``conn`` that holds the target's movelib lock.

    The lock is ``pg_advisory_xact_lock``: held by the transaction that does the work and
    released by its commit or rollback, so it cannot land on another server connection than the
    work (a transaction pooler keeps one transaction on one connection) nor outlive the run on a
    pooled connection, and a killed run's lock dies with its transaction. The wait is bounded by
    ``lock_timeout`` (``timeout`` seconds; set for this transaction only, so it bounds a wait
    for the application's table locks too). While we wait, the holder is named from
    ``pg_stat_activity``: our transactions carry the task, host and pid in
    ``application_name`` (also set for the transaction only).
    """
    label = f"{APPLICATION} {task} pid={os.getpid()} host={socket.gethostname()}"
    wait = f"{max(1, round(timeout * 1000))}ms"
    acquired = False
    try:
        with conn.transaction():
            conn.execute(
                f"SELECT {limits_off(conn)}, set_config('lock_timeout', %s, true), "
                "set_config('application_name', %s, true)", (wait, label[:63]))
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            acquired = True
            yield
    except psycopg.errors.LockNotAvailable:
        if acquired:
            raise
        raise LockTimeout(
            f"{target.describe()} is locked by another run: {describe_lock_holder(conn)}.\n"
            f"  waited {timeout:g} s; wait for it to finish or raise --lock-timeout"
        ) from None


def describe_lock_holder(conn: psycopg.Connection) -> str:
    query = sql.SQL(
        """
        SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
            SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((l.classid::bigint << 32) | l.objid::bigint) = {key}
        """
    ).format(key=sql.Literal(LOCK_KEY))
    row = conn.execute(query).fetchone()
    if row is None:
        return "a run that has just finished"
    pid, app, addr, since = row
    since_text = since.isoformat(timespec="seconds") if isinstance(since, datetime) else since
    return f"server pid {pid}, {app or 'unknown client'} from {addr or 'local socket'}, since {since_text}"


T = TypeVar("T")


def with_lock_tries(conn: psycopg.Connection, budget: float, attempt: Callable[[], T], *,
                    doing: str, target: Target, try_for: float = DDL_LOCK_TRY) -> T:
    """Run ``attempt`` (statements that take strong table locks: DDL) in a savepoint of the
    caller's transaction whose ``lock_timeout`` is ``try_for`` seconds; when a lock is not had by
    then, back out of the savepoint (which releases every lock it took), wait a little longer
    each time and try again, until ``budget`` seconds have passed.

    A DDL statement that waits for a table lock (an application's transaction holds the table)
    makes every later reader of that table wait behind it. Waiting ``try_for`` at most, then
    letting go, bounds what a reader waits to one try, however long the application's
    transaction lasts (GitLab's and strong_migrations' practice). Raises :class:`LockTimeout`
    when the budget is spent: the caller's transaction then rolls back, nothing written.
    """
    deadline = time.monotonic() + budget
    pause = try_for
    tries = 0
    while True:
        tries += 1
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)",
                             (f"{max(1, round(try_for * 1000))}ms",))
                result = attempt()
                # back to the transaction's own wait for the rest of it (the savepoint keeps
                # what it set once released)
                conn.execute("SELECT set_config('lock_timeout', %s, true)",
                             (f"{max(1, round(budget * 1000))}ms",))
                return result
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() + pause > deadline:
                raise LockTimeout(
                    f"{doing} on {target.describe()} could not take its table locks: another "
                    f"session held them through {tries} tries of {try_for * 1000:g} ms over "
                    f"{budget:g} s (readers never waited longer than one try); nothing was "
                    "written.\n  find the long transaction (pg_stat_activity) or raise "
                    "--lock-timeout") from None
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
