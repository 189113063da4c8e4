"""Connections to a target, with libpq's failures turned into messages a user can act on."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from . import secrets
from .errors import (
    AuthenticationFailed,
    DatabaseError,
    DatabaseMissing,
    LockTimeout,
    TargetUnreachable,
)
from .target import Target

CONNECT_TIMEOUT = 5
# Every movelib connection speaks UTF-8, whatever the server's or database's default: on a
# SQL_ASCII database psycopg would otherwise hand back bytes, not text.
CLIENT_ENCODING = "UTF8"
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
        )
    except psycopg.OperationalError as exc:
        raise translate_connect_error(target, exc) from None


STREAM_ROWS = 10_000  # rows a server-side cursor fetches at a time


@contextmanager
def stream(conn: psycopg.Connection, query: str | sql.Composed,
           params: tuple[object, ...] = ()) -> Iterator[Iterator[tuple[Any, ...]]]:
    """``with stream(conn, query) as rows:`` the rows of ``query`` from a server-side cursor,
    :data:`STREAM_ROWS` at a time: memory stays flat however many rows there are. Runs in the
    caller's transaction (a savepoint) or, on an autocommit connection, in one of its own; the
    cursor and the savepoint end with the block, however it ends."""
    with conn.transaction(), conn.cursor(name="movelib_stream") as cur:
        cur.itersize = STREAM_ROWS
        cur.execute(query, params)
        yield iter(cur)


def translate_connect_error(target: Target, exc: Exception) -> Exception:
    detail = secrets.redact(" ".join(str(exc).split()))
    where = target.describe()
    lowered = detail.lower()
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


def raise_sql_error(target: Target, exc: psycopg.Error, doing: str) -> None:
    """Re-raise a driver error during ``doing`` as a :class:`DatabaseError`."""
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        raise TargetUnreachable(
            f"lost the connection to {target.describe()} while {doing}; nothing was "
            f"committed by this step. Retry once the server is back.\n"
            f"  (libpq said: {secrets.redact(' '.join(str(exc).split()))})"
        ) from None
    text = secrets.redact(str(exc).strip())
    raise DatabaseError(f"{doing} failed on {target.describe()}: {text}") from None


@contextmanager
def advisory_lock(
    conn: psycopg.Connection, target: Target, *, task: str, timeout: float
) -> Iterator[None]:
    """Hold the target's movelib lock (session level) for the duration of the block.

    The lock dies with the session, so a killed run leaves nothing stale behind. While we
    wait, the holder is named from ``pg_stat_activity``: our connections carry the task,
    host and pid in ``application_name``.
    """
    label = f"{APPLICATION} {task} pid={os.getpid()} host={socket.gethostname()}"
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('application_name', %s, false)", (label[:63],))
    if not conn.autocommit:
        conn.commit()
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if not conn.autocommit:
            conn.commit()
        if row and row[0]:
            break
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"{target.describe()} is locked by another run: {describe_lock_holder(conn)}.\n"
                f"  waited {timeout:g} s; wait for it to finish or raise --lock-timeout"
            )
        time.sleep(0.2)
    try:
        yield
    finally:
        try:
            if not conn.closed:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
                if not conn.autocommit:
                    conn.commit()
        except psycopg.Error:
            pass  # the session is gone, and its lock with it


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
    if not conn.autocommit:
        conn.commit()
    if row is None:
        return "a run that has just finished"
    pid, app, addr, since = row
    since_text = since.isoformat(timespec="seconds") if isinstance(since, datetime) else since
    return f"server pid {pid}, {app or 'unknown client'} from {addr or 'local socket'}, since {since_text}"
