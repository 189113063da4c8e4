"""Migrations in yoyo's format and bookkeeping, applied in the run's own transaction.

The files are yoyo's (ids from their names, ``-- depends:`` and ``-- transactional:`` read by
yoyo's own directive parser: :func:`read_headers`), and yoyo's tables record what is applied,
so the ``yoyo`` command still reads and rolls back what movelib applied. movelib applies them
itself, on the run's connection, inside the transaction that holds the target's lock
(:func:`movelib.database.db.locked`): yoyo's backend would open a second connection with a
session of its own and a lock row a killed process leaves behind, and behind a transaction
pooler its transactions and our lock would land on different server connections. So
migrations, the records yoyo keeps of them (``_yoyo_migration``, ``_yoyo_log``) and the run's
other work commit together or not at all: a crash or a failed migration leaves no table without
its record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg

from ..base import secrets
from ..base.defaults import LOCK_TIMEOUT
from ..base.errors import ArtifactError, ConfigError, MigrationError
from ..base.text import shown_path
from . import db
from .guard import Permission, check_protected
from .tables import environment_label, table_exists
from .target import Target
from .yoyo_tables import YOYO_LOCK_TABLE, applied_ids, ensure_bookkeeping, record_applied

ENVIRONMENTS = ("local", "staging", "production")
# The checkout's own migrations (src layout), for callers that have no Settings.
CHECKOUT_MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


@dataclass
class MigrateResult:
    applied: list[str] = field(default_factory=list)
    already: int = 0
    environment: str | None = None
    environment_changed: bool = False

    def lines(self) -> list[str]:
        if self.applied:
            out = [f"migrations: applied {len(self.applied)} ({', '.join(self.applied)})"]
        else:
            out = [f"migrations: up to date ({self.already} applied)"]
        if self.environment_changed:
            out.append(f"environment: labelled {self.environment}")
        return out


def migrate(
    target: Target,
    migrations_dir: Path,
    *,
    environment: str | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    permission: Permission | None = None,
) -> MigrateResult:
    """Apply pending migrations to ``target`` in one transaction that holds its lock."""
    check_environment(environment)
    with db.connect(target, task="migrate", autocommit=True) as conn:
        try:
            with db.locked(conn, target, task="migrate", timeout=lock_timeout):
                relabel = environment is not None and environment != environment_label(conn)
                if relabel or pending_migrations(conn, migrations_dir):
                    check_protected(conn, target, permission or Permission(), "migrate")
                result = apply_pending(conn, target, migrations_dir, lock_timeout=lock_timeout)
                if environment is not None:
                    result.environment = environment
                    result.environment_changed = set_environment(conn, environment)
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "migrate")
            raise
    return result


def check_environment(environment: str | None) -> None:
    """Refuse an unknown ``--environment`` (before anything connects or starts)."""
    if environment is not None and environment not in ENVIRONMENTS:
        raise ConfigError(
            f"unknown environment {environment!r}; choose one of {', '.join(ENVIRONMENTS)}"
        )


def apply_pending(conn: psycopg.Connection, target: Target, migrations_dir: Path, *,
                  lock_timeout: float = LOCK_TIMEOUT) -> MigrateResult:
    """Apply what is pending, in the caller's transaction (which holds the target's lock).

    Each migration takes its table locks in short tries (:func:`movelib.database.db.with_lock_tries`)
    for up to ``lock_timeout`` seconds: the application's readers never queue behind a
    migration waiting for a lock longer than one try.

    The common case costs two plain queries and no yoyo import: every migration file's id is
    already in ``_yoyo_migration``. A failing migration raises :class:`MigrationError`; the
    caller's transaction then rolls back every migration of the run with it.
    """
    ids = migration_ids(migrations_dir)
    applied = _applied(conn)
    pending = [i for i in ids if i not in applied]
    if table_exists(conn, YOYO_LOCK_TABLE):  # we hold the lock: any row yoyo left is stale
        conn.execute(f"DELETE FROM {YOYO_LOCK_TABLE}")
    if not pending:
        return MigrateResult(already=len(ids))
    ensure_bookkeeping(conn, target)
    texts = dict(_pending_sql(migrations_dir, ids, pending))
    result = MigrateResult(already=len(ids) - len(pending))
    for migration_id in pending:
        text = texts[migration_id]
        try:
            with conn.transaction():  # a savepoint: the failing migration is named
                db.with_lock_tries(conn, lock_timeout, partial(conn.execute, text),
                                   doing=f"migration {migration_id}", target=target)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
                raise  # the connection, not the migration: the caller says so
            raise MigrationError(
                f"migration {migration_id} failed on {target.describe()}; nothing of this run "
                f"was applied or recorded:\n  {secrets.redact(str(exc).strip())}"
            ) from None
        record_applied(conn, migration_id, "applied by movelib")
        result.applied.append(migration_id)
    return result


def _applied(conn: psycopg.Connection) -> set[str]:
    return set(applied_ids(conn))


def _pending_sql(migrations_dir: Path, ids: list[str],
                 pending: list[str]) -> list[tuple[str, bytes]]:
    """The SQL of the ``pending`` migrations, each checked to be one movelib can apply."""
    try:
        headers = read_headers(migrations_dir)
        for migration_id in pending:
            if not headers[migration_id].transactional:
                raise MigrationError(
                    f"migration {migration_id} says `-- transactional: false`; movelib applies "
                    "migrations inside the run's transaction (its lock lives there). Apply it "
                    "with yoyo by hand, then run again")
        everything = checkout_migrations(migrations_dir, ids)  # each after what it depends on
    except ArtifactError as exc:
        raise MigrationError(str(exc).replace("the dump", "the migrations")) from None
    return [(m, text) for m, text in everything if m in pending]


def set_environment(conn: psycopg.Connection, label: str) -> bool:
    """Label the database; True when the label changed."""
    if environment_label(conn) == label:
        return False
    conn.execute(
        """
        INSERT INTO movement_environment (singleton, label) VALUES (true, %s)
        ON CONFLICT (singleton) DO UPDATE
           SET label = EXCLUDED.label, set_at = now(), set_by = current_user
        """,
        (label,),
    )
    return True


def migration_ids(migrations_dir: Path) -> list[str]:
    """The ids yoyo gives the migrations of ``migrations_dir`` (file names without ``.sql``;
    rollback files are not migrations), read without importing yoyo."""
    try:
        names = [p.name for p in migrations_dir.iterdir() if p.is_file()]
    except OSError:
        raise ConfigError(f"no migrations directory at {shown_path(migrations_dir)}") from None
    hooks = [n for n in names if n.startswith("post-apply")]
    if hooks:
        raise ConfigError(f"{shown_path(migrations_dir)} has yoyo post-apply hooks ({', '.join(hooks)}), "
                          "which movelib does not run; fold them into a migration")
    python = [n for n in names if n.endswith(".py")]
    if python:
        raise ConfigError(f"{shown_path(migrations_dir)} has Python migrations ({', '.join(python)}); a "
                          "seed dump carries SQL migrations only: write them in SQL")
    return sorted(n.removesuffix(".sql") for n in names
                  if n.endswith(".sql") and not n.endswith(".rollback.sql")
                  and not n.startswith("_tmp_yoyonew"))


def pending_migrations(conn: psycopg.Connection, migrations_dir: Path) -> list[str]:
    """Migrations not yet applied, read without writing."""
    applied = _applied(conn)
    return [i for i in migration_ids(migrations_dir) if i not in applied]


@dataclass(frozen=True)
class Header:
    """A migration file's yoyo directives."""

    path: Path
    depends: frozenset[str]  # ``-- depends: A B``
    transactional: bool  # ``-- transactional: false`` makes it False


def read_headers(migrations_dir: Path) -> dict[str, Header]:
    """The directives of each migration of ``migrations_dir``, by id: read from the file's
    leading comments with yoyo's own parser, where yoyo's ``read_migrations`` finds them, but
    without splitting every statement of every file with sqlparse first (which took most of an
    everyday task's own time). A dependency on a migration the folder lacks, or a
    ``transactional`` yoyo would not read, is refused as yoyo refuses it."""
    from yoyo.migrations import parse_metadata_from_sql_comments

    headers: dict[str, Header] = {}
    for migration_id in migration_ids(migrations_dir):
        path = migrations_dir / f"{migration_id}.sql"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"cannot read migration {shown_path(path)}: {exc}") from None
        directives, _, _ = parse_metadata_from_sql_comments(text)
        transactional = directives.get("transactional", "true").lower()
        if transactional not in ("true", "false"):
            raise ArtifactError(f"migration {migration_id} says `-- transactional: "
                                f"{transactional}`, which yoyo does not read (true or false)")
        headers[migration_id] = Header(path, frozenset(directives.get("depends", "").split()),
                                       transactional == "true")
    for migration_id, header in headers.items():
        unknown = sorted(header.depends - set(headers))
        if unknown:
            raise ArtifactError(f"migration {migration_id} depends on {', '.join(unknown)}, "
                                f"which {shown_path(migrations_dir)} does not hold")
    return headers


def checkout_migrations(migrations_dir: Path, ids: Sequence[str],
                        written_by: str | None = None) -> list[tuple[str, bytes]]:
    """This checkout's SQL for the migrations ``ids`` (in that order), each after the ones it
    depends on; a migration this checkout lacks is refused (the dump is newer than movelib)."""
    if not migrations_dir.is_dir():
        raise ArtifactError(f"no migrations directory at {shown_path(migrations_dir)}")
    known = read_headers(migrations_dir)
    missing = [m for m in ids if m not in known]
    if missing:
        by = f" (it was written by movelib {written_by})" if written_by else ""
        raise ArtifactError(
            f"the dump needs migration(s) {', '.join(missing)}, which this movelib does not "
            f"have{by}: upgrade movelib to restore it; refusing the dump")
    out: list[tuple[str, bytes]] = []
    for migration_id in ids:
        before = {m for m, _ in out}
        needs = sorted(known[migration_id].depends - before)
        if needs:
            raise ArtifactError(f"migration {migration_id} depends on {', '.join(needs)}, "
                                "which the dump does not list before it; refusing the dump")
        out.append((migration_id, known[migration_id].path.read_bytes()))
    return out
