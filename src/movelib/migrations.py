"""yoyo migrations, applied atomically under the target's advisory lock.

Two things of stock yoyo do not survive a killed process, and both are fixed here:

* yoyo commits a migration's DDL, then records it in a second transaction: a crash between the
  two leaves tables without a record, and the rerun fails on "already exists". Our backend
  runs the steps, the log row and the record in one transaction: all of it, or none.
* yoyo's lock is a row in ``yoyo_lock`` that a killed process leaves behind. We serialise with
  a PostgreSQL advisory lock instead (it dies with the session), so any ``yoyo_lock`` row met
  while we hold it is stale and is removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from . import db
from .defaults import LOCK_TIMEOUT
from .errors import ConfigError, MigrationError
from .guard import Permission, check_protected
from .tables import YOYO_MIGRATION_TABLE, environment_label, table_exists
from .target import Target

ENVIRONMENTS = ("local", "staging", "production")


def _backend_class() -> type[Any]:
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend

    class AtomicBackend(PostgresqlPsycopgBackend):  # type: ignore[misc]
        def init_database(self) -> None:
            # Stock yoyo probes for transactional DDL by creating a table in a rolled-back
            # transaction, then dropping it, and creates yoyo_lock with a plain CREATE TABLE:
            # two ERROR lines in the server log on every run ('table "yoyo_tmp_..." does not
            # exist', 'relation "yoyo_lock" already exists'). PostgreSQL's DDL is transactional.
            self.has_transactional_ddl = True
            create = self.format_sql(self.create_lock_table_sql)
            with contextlib.suppress(self.DatabaseError), self.transaction():  # as yoyo's
                self.execute(create.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))

        def apply_one(self, migration: Any, force: bool = False, mark: bool = True) -> None:
            self.ensure_internal_schema_updated()
            with self.transaction():
                migration.process_steps(self, "apply", force=force)
                self.log_migration(migration, "apply")
                if mark:
                    self.mark_one(migration, log=False)

        @contextmanager
        def lock(self, timeout: int = 10) -> Iterator[None]:
            # The caller holds movelib's advisory lock: every yoyo_lock row is stale.
            with self.transaction():
                self.execute(f"DELETE FROM {self.lock_table_quoted}")
            yield

    return AtomicBackend


def open_backend(target: Target) -> Any:
    """A yoyo backend on ``target``, connected with our own (already parsed) parameters."""
    from yoyo.connections import DatabaseURI

    params = target.params
    args = {k: v for k, v in params.items()
            if k not in {"user", "password", "host", "port", "dbname"}}
    args.setdefault("connect_timeout", str(db.CONNECT_TIMEOUT))
    args.setdefault("application_name", "movelib migrate")
    args["client_encoding"] = db.CLIENT_ENCODING  # yoyo's connection too (SQL_ASCII databases)
    uri = DatabaseURI(
        "postgresql+psycopg",
        params.get("user"),
        params.get("password"),
        params.get("host"),
        int(params["port"]) if params.get("port", "").isdigit() else None,
        params.get("dbname"),
        args,
    )
    try:
        backend = _backend_class()(uri, YOYO_MIGRATION_TABLE)
        backend.init_database()
    except psycopg.OperationalError as exc:
        raise db.translate_connect_error(target, exc) from None
    return backend


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
    """Apply pending migrations to ``target`` under its advisory lock."""
    if environment is not None and environment not in ENVIRONMENTS:
        raise ConfigError(
            f"unknown environment {environment!r}; choose one of {', '.join(ENVIRONMENTS)}"
        )
    with db.connect(target, task="migrate", autocommit=True) as conn, db.advisory_lock(
        conn, target, task="migrate", timeout=lock_timeout
    ):
        relabel = environment is not None and environment != environment_label(conn)
        if relabel or pending_migrations(conn, migrations_dir):
            check_protected(conn, target, permission or Permission(), "migrate")
        result = apply_pending(target, migrations_dir, conn)
        if environment is not None:
            result.environment = environment
            result.environment_changed = set_environment(conn, environment)
    return result


def apply_pending(target: Target, migrations_dir: Path,
                  conn: psycopg.Connection | None = None) -> MigrateResult:
    """Apply what is pending; the caller holds the target's advisory lock.

    With ``conn`` (the caller's autocommit connection), the common case costs two plain
    queries: when every migration file's id is already in ``_yoyo_migration``, yoyo is not
    loaded and no second connection is opened (stale ``yoyo_lock`` rows are removed all the same).
    """
    if not migrations_dir.is_dir():
        raise ConfigError(f"no migrations directory at {migrations_dir}")
    if conn is not None:
        done = _nothing_pending(conn, migrations_dir)
        if done is not None:
            return done
    from yoyo import read_migrations

    migrations = read_migrations(str(migrations_dir))
    backend = open_backend(target)
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            result = MigrateResult(already=len(migrations) - len(pending))
            for migration in pending:
                try:
                    backend.apply_one(migration)
                except psycopg.Error as exc:
                    from . import secrets

                    raise MigrationError(
                        f"migration {migration.id} failed on {target.describe()}; nothing of "
                        f"it was applied or recorded:\n  {secrets.redact(str(exc).strip())}"
                    ) from None
                result.applied.append(migration.id)
        return result
    finally:
        backend.connection.close()


def set_environment(conn: psycopg.Connection, label: str) -> bool:
    """Label the database; True when the label changed."""
    row = conn.execute("SELECT label FROM movement_environment").fetchone()
    if row and row[0] == label:
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


def migration_ids(migrations_dir: Path) -> list[str] | None:
    """The ids yoyo gives the migrations of ``migrations_dir`` (file names without ``.sql`` or
    ``.py``; rollback files are not migrations), read without importing yoyo. None when the
    folder has a post-apply hook or is not a folder: then yoyo reads it."""
    try:
        names = [p.name for p in migrations_dir.iterdir() if p.is_file()]
    except OSError:
        return None
    if any(n.startswith("post-apply") for n in names):
        return None
    return sorted(n.rsplit(".", 1)[0] for n in names
                  if n.endswith((".sql", ".py")) and not n.endswith(".rollback.sql")
                  and not n.startswith("_tmp_yoyonew"))


def _nothing_pending(conn: psycopg.Connection, migrations_dir: Path) -> MigrateResult | None:
    """A result when every migration is applied already, or None (then yoyo looks)."""
    ids = migration_ids(migrations_dir)
    if ids is None:
        return None
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL, to_regclass('yoyo_lock') IS NOT NULL",
                       (YOYO_MIGRATION_TABLE,)).fetchone()
    if row is None or not row[0]:
        return None
    applied = {r[0] for r in conn.execute(f"SELECT migration_id FROM {YOYO_MIGRATION_TABLE}")}
    if not applied.issuperset(ids):
        return None
    if row[1]:  # we hold the advisory lock: any yoyo_lock row is stale, as in AtomicBackend.lock
        conn.execute("DELETE FROM yoyo_lock")
    return MigrateResult(already=len(ids))


def pending_migrations(conn: psycopg.Connection, migrations_dir: Path) -> list[str]:
    """Migrations not yet applied, read without writing (yoyo's backend creates tables)."""
    ids = migration_ids(migrations_dir)
    if ids is None:
        from yoyo import read_migrations

        ids = [m.id for m in read_migrations(str(migrations_dir))]
    if not table_exists(conn, YOYO_MIGRATION_TABLE):
        return ids
    applied = {r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration")}
    return [i for i in ids if i not in applied]
