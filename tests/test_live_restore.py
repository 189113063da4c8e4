"""A restore into the application's live database: what the application built on the movement
tables stays, ids stay, readers never wait, and only what differs is written.

The release pair used throughout: A, a synthetic library, and B, the same with ten movements
changed (published as version 2). The targets are set up as an application's production
database is: its foreign keys, views, grants, policies and more on the movement tables, its
readers polling while the restore runs, its transactions holding locks.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import (
    MIGRATION_NAMES,
    ROOT,
    Cli,
    Server,
    database,
    ids_by_version,
    library_state,
    rows,
    seed,
)

from movelib.base.errors import ArtifactError, LockTimeout, RestoreFailed
from movelib.database.migrations import migrate
from movelib.database.target import Target, target_from_dsn
from movelib.ship import merge as merge_module
from movelib.ship.dump import dump
from movelib.ship.restore import plan_restore, restore
from movelib.source.synth import write_synthetic

MIGRATIONS = ROOT / "migrations"
MOVEMENTS = 1000
CHANGED = 10


@dataclass(frozen=True)
class Releases:
    a: Path  # a dump of A
    a_file: Path  # A's data file
    b: Path  # a dump of B: A with CHANGED movements at version 2
    a_library: list[tuple[Any, ...]]
    b_library: list[tuple[Any, ...]]
    changed: list[str]  # the slugs B changed
    source: str  # the source database (holding B) on pg18


@pytest.fixture(scope="module")
def releases(pg18: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Releases]:
    folder = tmp_path_factory.mktemp("releases")
    a_file, b_file = folder / "a.json", folder / "b.json"
    write_synthetic(MOVEMENTS, a_file)
    data = json.loads(a_file.read_text())
    changed = [m["slug"] for m in data[:: MOVEMENTS // CHANGED][:CHANGED]]
    for m in data:
        if m["slug"] in changed:
            m["name"] += " (revised)"
    b_file.write_text(json.dumps(data))
    with database(pg18, "movelib_template") as name:
        source = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(source, a_file)
        a = dump(source, MIGRATIONS, folder / "a", update_latest=False).path
        a_library = library_state(source)
        seed(source, b_file, new_versions=True)
        b = dump(source, MIGRATIONS, folder / "b", update_latest=False).path
        yield Releases(a, a_file, b, a_library, library_state(source), changed, name)


def holding(server: Server, dump_file: Path) -> Iterator[Target]:
    """A new database that holds ``dump_file`` (a bulk load into an empty database)."""
    with database(server) as name:
        target = target_from_dsn(server.dsn(name), "--dsn")
        restore(plan_restore(target, dump_file))
        yield target


@pytest.fixture
def holds_a(server: Server, releases: Releases) -> Iterator[Target]:
    yield from holding(server, releases.a)


@pytest.fixture
def holds_a_on_pg18(pg18: Server, releases: Releases) -> Iterator[Target]:
    yield from holding(pg18, releases.a)


def execute(target: Target, statements: str) -> None:
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute(statements)


# What an application adds to the movement tables (Supabase-style default privileges among
# them), one kind of object per statement.
APPLICATION = """
DO $$ BEGIN CREATE ROLE app_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE anon; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE TABLE app_workout_item (id int PRIMARY KEY,
    movement_id bigint NOT NULL REFERENCES movement_library (id) ON DELETE CASCADE);
INSERT INTO app_workout_item SELECT row_number() OVER (ORDER BY id), id
  FROM movement_library WHERE version = 1 ORDER BY id LIMIT 25;
CREATE TABLE app_favorite (slug text PRIMARY KEY REFERENCES movement_current (slug));
INSERT INTO app_favorite SELECT slug FROM movement_current ORDER BY slug LIMIT 5;
CREATE VIEW app_movement_names AS SELECT id, slug, name FROM movement_library;
CREATE MATERIALIZED VIEW app_levels AS SELECT level, count(*) AS n FROM movement_library GROUP BY level;
GRANT SELECT ON movement_library, movement_current TO app_reader;
GRANT SELECT (slug, status) ON movement_staging TO app_reader;
ALTER TABLE movement_library ENABLE ROW LEVEL SECURITY;
CREATE POLICY app_read ON movement_library FOR SELECT TO app_reader USING (level <> 'hidden');
COMMENT ON TABLE movement_library IS 'the catalogue the planner shows';
COMMENT ON COLUMN movement_library.name IS 'shown in the app';
CREATE INDEX app_library_lower_name ON movement_library (lower(name));
CREATE TABLE app_log (at timestamptz DEFAULT now(), what text);
CREATE FUNCTION app_note() RETURNS trigger LANGUAGE plpgsql AS
    $f$ BEGIN INSERT INTO app_log (what) VALUES (TG_OP || ' ' || TG_TABLE_NAME); RETURN NULL; END $f$;
CREATE TRIGGER app_library_changed AFTER INSERT ON movement_library
    FOR EACH STATEMENT EXECUTE FUNCTION app_note();
CREATE RULE app_library_notify AS ON INSERT TO movement_library DO ALSO NOTIFY movement_changed;
SET client_min_messages = error;  -- CREATE PUBLICATION warns that wal_level is not logical
CREATE PUBLICATION app_catalogue FOR TABLE movement_library, movement_current;
ALTER TABLE movement_library REPLICA IDENTITY FULL;
ALTER TABLE movement_library SET (fillfactor = 90);
ALTER TABLE movement_library ALTER COLUMN name SET STATISTICS 500;
INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc)
    VALUES (repeat('a', 64), 'app-0001.create-workouts', now());
ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO anon;
"""
# The catalog, read without movelib's code: what the application built, and whom it lets in.
SNAPSHOT = {
    "tables": """SELECT c.relname, c.relowner::regrole::text, c.relacl::text, c.relrowsecurity,
                        c.relforcerowsecurity, c.relreplident, c.reloptions::text,
                        obj_description(c.oid, 'pg_class')
                   FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                  ORDER BY 1""",
    "columns": """SELECT a.attrelid::regclass::text, a.attname, a.attacl::text, a.attstattarget,
                         col_description(a.attrelid, a.attnum)
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                   WHERE c.relname LIKE 'movement%' AND c.relkind = 'r' AND a.attnum > 0
                   ORDER BY 1, 2""",
    "foreign keys": """SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid)
                         FROM pg_constraint WHERE contype = 'f' ORDER BY 1, 2""",
    "views": """SELECT relname, relkind, pg_get_viewdef(oid) FROM pg_class
                 WHERE relkind IN ('v', 'm') AND relnamespace = 'public'::regnamespace ORDER BY 1""",
    "policies": "SELECT tablename, policyname, roles::text, cmd, qual FROM pg_policies ORDER BY 1, 2",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
    "triggers": """SELECT tgrelid::regclass::text, tgname, tgenabled, pg_get_triggerdef(oid)
                     FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2""",
    "rules": "SELECT tablename, rulename, definition FROM pg_rules WHERE schemaname = 'public' ORDER BY 1, 2",
    "publications": "SELECT pubname, tablename FROM pg_publication_tables ORDER BY 1, 2",
    "grants": """SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants
                  WHERE grantee IN ('anon', 'app_reader', 'PUBLIC') ORDER BY 1, 2, 3""",
    "default privileges": "SELECT defaclobjtype, defaclacl::text FROM pg_default_acl ORDER BY 1",
    "other migrations": "SELECT migration_id FROM _yoyo_migration WHERE migration_id LIKE 'app-%'",
    "application rows": """SELECT w.id, l.slug, l.version FROM app_workout_item w
                             JOIN movement_library l ON l.id = w.movement_id ORDER BY w.id""",
    "favourites": "SELECT slug FROM app_favorite ORDER BY slug",
}


def snapshot(target: Target) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows(target, query) for name, query in SNAPSHOT.items()}


def test_a_restore_keeps_everything_the_application_built_on_the_tables(cli: Cli, holds_a: Target, releases: Releases) -> None:
    execute(holds_a, APPLICATION)
    before = snapshot(holds_a)
    assert len([k for k, v in before.items() if v]) >= 12
    assert not [g for g in before["grants"] if g[0] == "anon"]  # anon holds nothing on our tables
    previewed = cli("restore", "--dump-file", str(releases.b), "--dsn", holds_a.conninfo, "--dry-run")
    assert previewed.code == 0, previewed.output
    for named in ("foreign key app_workout_item.app_workout_item_movement_id_fkey -> movement_library",
                  "view app_movement_names", "view app_levels (materialized)", "policy app_read on movement_library",
                  "grant app_reader: SELECT on movement_library", "row-level security movement_library",
                  "trigger app_library_changed on movement_library", "index app_library_lower_name",
                  "rule app_library_notify on movement_library", "publication app_catalogue: movement_library",
                  f"merge: into the tables that exist: {CHANGED} version(s) added, 0 removed, {MOVEMENTS} kept"):
        assert named in previewed.stdout, previewed.stdout
    restored = cli("restore", "--dump-file", str(releases.b), "--dsn", holds_a.conninfo, "--yes")
    assert restored.code == 0, restored.output
    assert f"merged: {CHANGED} version(s) added, 0 removed" in restored.stdout
    after = snapshot(holds_a)
    assert after == before  # every dependent, grant and policy as it was; anon gained nothing
    assert library_state(holds_a) == releases.b_library
    assert rows(holds_a, "SELECT what FROM app_log") == [("INSERT movement_library",)]  # its trigger saw the merge


def test_ids_stay_the_targets_and_application_rows_keep_their_movement(pg18: Server, releases: Releases, tmp_path: Path) -> None:
    """The source and the target were seeded in different orders: their ids differ."""
    data = json.loads(releases.a_file.read_text())
    reordered = tmp_path / "reordered.json"
    reordered.write_text(json.dumps(data[::-1][:300]))
    with database(pg18, "movelib_template") as name:
        target = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(target, reordered)
        ids = ids_by_version(target)
        source_ids = {(s, v): i for s, v, i in rows(
            target_from_dsn(pg18.dsn(releases.source), "--dsn"), "SELECT slug, version, id FROM movement_library")}
        assert sum(source_ids[k] != i for k, i in ids.items()) > 250  # the two numberings differ
        execute(target, "CREATE TABLE app_plan (movement_id bigint REFERENCES movement_library (id));"
                        "INSERT INTO app_plan SELECT id FROM movement_library;")
        planned = rows(target, "SELECT l.slug, l.version FROM app_plan p JOIN movement_library l ON l.id = p.movement_id ORDER BY 1")
        restore(plan_restore(target, releases.b))
        after = ids_by_version(target)
        assert {k: after[k] for k in ids} == ids  # each version the target held keeps its id
        assert rows(target, "SELECT l.slug, l.version FROM app_plan p JOIN movement_library l ON l.id = p.movement_id ORDER BY 1") == planned
        assert library_state(target) == releases.b_library


def test_migrated_tables_without_rows_are_loaded_whole_and_keep_what_the_application_built(
        cli: Cli, server: Server, releases: Releases, tmp_path: Path) -> None:
    """`inv migrate`, the application's objects, then `inv restore`: tables that exist but hold
    nothing are loaded as a load into an empty database loads them (the dump's rows and ids,
    COPYed), never dropped; their sequences then follow the rows (a later seed adds versions)."""
    with database(server) as name:
        target = target_from_dsn(server.dsn(name), "--dsn")
        migrate(target, MIGRATIONS)
        execute(target, "SELECT setval(pg_get_serial_sequence('movement_library', 'id'), 5000);"
                        "CREATE TABLE app_plan (movement_id bigint REFERENCES movement_library (id));"
                        "CREATE VIEW app_names AS SELECT slug, name FROM movement_library_current;"
                        "COMMENT ON TABLE movement_library IS 'the application reads this';")
        result = cli("restore", "--dump-file", str(releases.b), "--dsn", target.conninfo, "--yes")
        assert result.code == 0, result.output
        assert f"merged: {MOVEMENTS + CHANGED} version(s) added, 0 removed" in result.stdout
        assert library_state(target) == releases.b_library
        source = target_from_dsn(server.dsn(releases.source), "--dsn") if server.major == 18 else None
        if source is not None:  # the dump's ids, not the target's sequence (which stood at 5000)
            assert ids_by_version(target) == ids_by_version(source)
        assert rows(target, "SELECT count(*) FROM app_names") == [(MOVEMENTS,)]
        assert rows(target, "SELECT obj_description('movement_library'::regclass, 'pg_class'), "
                            "(SELECT count(*) FROM pg_constraint WHERE conname = "
                            "'app_plan_movement_id_fkey')") == [("the application reads this", 1)]
        data = json.loads(releases.a_file.read_text())  # B's content, and one movement more revised
        for m in data:
            m["name"] += " (revised)" if m["slug"] in releases.changed else ""
        assert data[1]["slug"] not in releases.changed
        data[1]["name"] += " (revised too)"
        (tmp_path / "c.json").write_text(json.dumps(data))
        result = cli("seed", "--dsn", target.conninfo, "--file", str(tmp_path / "c.json"),
                     "--new-versions")
        assert result.code == 0, result.output  # new ids after the loaded ones: no collision
        assert rows(target, "SELECT count(*) FROM movement_library") == [(MOVEMENTS + CHANGED + 1,)]


def test_a_version_the_application_references_is_not_removed(cli: Cli, holds_a: Target, releases: Releases) -> None:
    """Restoring A over B removes B's ten version 2s: refused while a row references one."""
    target = holds_a
    restore(plan_restore(target, releases.b))
    execute(target, "CREATE TABLE app_plan (id int PRIMARY KEY, movement_id bigint "
                    "REFERENCES movement_library (id) ON DELETE CASCADE);"
                    f"INSERT INTO app_plan SELECT 7, id FROM movement_library WHERE slug = '{releases.changed[3]}' AND version = 2;")
    before = library_state(target)
    result = cli("restore", "--dump-file", str(releases.a), "--dsn", target.conninfo, "--yes")
    assert result.code == 1, result.output
    said = "public.app_plan (foreign key app_plan_movement_id_fkey): movement_id=" in result.stderr
    assert said and f"-> {releases.changed[3]} v2" in result.stderr, result.stderr
    assert "Nothing was written" in result.stderr and "restore: done" not in result.stdout
    assert library_state(target) == before and rows(target, "SELECT count(*) FROM app_plan") == [(1,)]
    dry = cli("restore", "--dump-file", str(releases.a), "--dsn", target.conninfo, "--dry-run")
    assert dry.code == 1 and "app_plan_movement_id_fkey" in dry.stderr
    # once nothing references them, the ten are removed with their drafts and audit rows
    execute(target, "DELETE FROM app_plan")
    result = cli("restore", "--dump-file", str(releases.a), "--dsn", target.conninfo, "--yes")
    assert result.code == 0, result.output
    assert f"merged: 0 version(s) added, {CHANGED} removed" in result.stdout
    assert library_state(target) == releases.a_library
    assert rows(target, "SELECT count(*) FROM movement_audit_log WHERE version = 2") == [(0,)]
    assert rows(target, "SELECT changes FROM movement_provenance ORDER BY id DESC LIMIT 1")[0][0] == {
        "added": 0, "removed": CHANGED, "kept": MOVEMENTS, "pointers": CHANGED, "retired": 0}


def test_the_library_then_equals_the_source_by_inv_diff(cli: Cli, pg18: Server, holds_a_on_pg18: Target, releases: Releases) -> None:
    restore(plan_restore(holds_a_on_pg18, releases.b))
    result = cli("diff", "--from", pg18.dsn(releases.source), "--to", holds_a_on_pg18.conninfo)
    assert result.code == 0, result.output
    assert "diff: equal" in result.stdout


@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "declared-but-unrecorded"])
def test_published_rows_are_removed_only_by_a_recorded_restore(holds_a_on_pg18: Target, declared: bool) -> None:
    with psycopg.connect(holds_a_on_pg18.conninfo) as conn:
        if declared:
            conn.execute("SELECT set_config('movelib.restore_removes', pg_current_xact_id()::text, true)")
            conn.execute("DELETE FROM movement_current")
            conn.execute("DELETE FROM movement_library")  # allowed here, refused at COMMIT
            with pytest.raises(psycopg.errors.RaiseException, match="recorded no restore"):
                conn.commit()
        else:
            with pytest.raises(psycopg.errors.RaiseException, match="Published movements cannot be edited"):
                conn.execute("DELETE FROM movement_library WHERE version = 1")
    assert rows(holds_a_on_pg18, "SELECT count(*) FROM movement_library") == [(MOVEMENTS,)]


class Reader(threading.Thread):
    """The application: ``query`` every 10 ms on its own connection, each try allowed to wait
    at most ``lock_wait`` for a lock (then it fails), its worst time and every answer kept."""

    def __init__(self, target: Target, query: str, lock_wait: str = "200ms") -> None:
        super().__init__(daemon=True)
        self.target, self.query, self.lock_wait = target, query, lock_wait
        self.stop = threading.Event()
        self.worst = 0.0
        self.answers: set[tuple[Any, ...]] = set()
        self.failure: BaseException | None = None
        self.queries = 0

    def run(self) -> None:
        try:
            with psycopg.connect(self.target.conninfo, autocommit=True) as conn:
                conn.execute(f"SET lock_timeout = '{self.lock_wait}'")
                while not self.stop.is_set():
                    started = time.monotonic()
                    row = conn.execute(self.query).fetchone()
                    self.worst = max(self.worst, time.monotonic() - started)
                    self.queries += 1
                    assert row is not None
                    self.answers.add(tuple(row))
                    time.sleep(0.01)
        except BaseException as exc:
            self.failure = exc

    def __enter__(self) -> Reader:
        self.start()
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(10)


LIBRARY_READ = "SELECT count(*), sum(version), max(name) FROM movement_library_current"


def test_readers_never_wait_for_a_restore_nor_see_two_releases_mixed(holds_a: Target, releases: Releases) -> None:
    target = holds_a
    with psycopg.connect(target.conninfo) as conn:
        before = conn.execute(LIBRARY_READ).fetchone()
    with Reader(target, LIBRARY_READ) as reader:
        restore(plan_restore(target, releases.b))
        time.sleep(0.1)
    with psycopg.connect(target.conninfo) as conn:
        after = conn.execute(LIBRARY_READ).fetchone()
    assert reader.failure is None, reader.failure  # no read waited 200 ms for a lock
    assert reader.queries > 3 and before != after
    assert reader.answers == {before, after}  # the old release, then the new one: never a mix


def at_0006(server: Server, folder: Path) -> Iterator[Target]:
    """A seeded database at migrations 0001-0006: a restore must apply 0007 (DDL) first."""
    six = folder / "six"
    six.mkdir()
    for path in sorted(MIGRATIONS.glob("000[1-6]*.sql")):
        shutil.copyfile(path, six / path.name)
    with database(server) as name:
        target = target_from_dsn(server.dsn(name), "--dsn")
        migrate(target, six)
        seed(target, skip_migrations=True)
        yield target


@pytest.fixture
def before_0007(pg18: Server, tmp_path: Path) -> Iterator[Target]:
    yield from at_0006(pg18, tmp_path)


@pytest.fixture
def any_before_0007(server: Server, tmp_path: Path) -> Iterator[Target]:
    yield from at_0006(server, tmp_path)


def holding_lock(target: Target, statement: str, seconds: float) -> Callable[[], None]:
    """An application transaction that runs ``statement`` and stays open ``seconds`` (or until
    the returned function is called)."""
    done = threading.Event()
    ready = threading.Event()

    def hold() -> None:
        with psycopg.connect(target.conninfo) as conn:
            conn.execute(statement)
            ready.set()
            done.wait(seconds)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    ready.wait(5)

    def release() -> None:
        done.set()
        thread.join(10)
    return release


PROVENANCE_READ = "SELECT count(*) FROM movement_provenance"


def test_a_long_application_transaction_makes_the_restore_wait_politely(any_before_0007: Target, releases: Releases) -> None:
    """0007 alters movement_provenance (ACCESS EXCLUSIVE): while an application transaction
    reads that table, each try waits 150 ms and lets go, so readers never queue longer."""
    target = any_before_0007
    release = holding_lock(target, PROVENANCE_READ, 3)
    started = time.monotonic()
    with Reader(target, PROVENANCE_READ) as reader:
        result = restore(plan_restore(target, releases.b), lock_timeout=20)
    release()
    assert time.monotonic() - started > 2.5  # it waited for the application's transaction
    assert reader.failure is None, reader.failure  # and no reader waited 200 ms behind it
    assert result.migrated == tuple(MIGRATION_NAMES[6:])
    assert library_state(target) == releases.b_library


def test_a_restore_that_cannot_take_its_locks_gives_up_with_nothing_written(cli: Cli, before_0007: Target, releases: Releases) -> None:
    target = before_0007
    before = library_state(target)
    release = holding_lock(target, PROVENANCE_READ, 30)
    try:
        with Reader(target, PROVENANCE_READ) as reader:
            result = cli("restore", "--dump-file", str(releases.b), "--dsn", target.conninfo, "--yes",
                         "--lock-timeout", "1")
            with pytest.raises(LockTimeout, match="could not take its table locks"):
                migrate(target, MIGRATIONS, lock_timeout=1)
    finally:
        release()
    assert result.code == 2, result.output
    assert "could not take its table locks" in result.stderr and "nothing was written" in result.stderr
    assert reader.failure is None, reader.failure
    assert library_state(target) == before
    assert rows(target, "SELECT count(*) FROM _yoyo_migration WHERE migration_id LIKE '0007%'") == [(0,)]


def wal_bytes(target: Target, work: Callable[[], object]) -> int:
    """The WAL written while ``work`` runs. The position is the server's: autovacuum is off
    meanwhile (and none of its workers running), so that what it writes for other databases is
    not counted."""
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET autovacuum = off")
        conn.execute("SELECT pg_reload_conf()")
        try:
            for _ in range(100):
                busy = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE backend_type = 'autovacuum worker'").fetchall()
                if not busy:
                    break
                time.sleep(0.1)
            start = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
            work()
            end = conn.execute("SELECT pg_current_wal_insert_lsn() - %s::pg_lsn", start).fetchone()
        finally:
            conn.execute("ALTER SYSTEM RESET autovacuum")
            conn.execute("SELECT pg_reload_conf()")
    assert end is not None
    return int(end[0])


def test_a_release_differing_by_ten_movements_writes_a_fraction_of_the_wal(server: Server, holds_a: Target, releases: Releases) -> None:
    execute(holds_a, "VACUUM")  # a live library's pages have long been read and vacuumed
    merged = wal_bytes(holds_a, lambda: restore(plan_restore(holds_a, releases.b)))
    with database(server) as name:
        empty = target_from_dsn(server.dsn(name), "--dsn")
        full = wal_bytes(empty, lambda: restore(plan_restore(empty, releases.b)))
    assert merged * 20 < full, (merged, full)


def test_an_unchanged_release_writes_only_its_record(holds_a_on_pg18: Target, releases: Releases) -> None:
    ids = ids_by_version(holds_a_on_pg18)
    result = restore(plan_restore(holds_a_on_pg18, releases.a))
    assert result.merged is not None and not result.merged.writes
    assert ids_by_version(holds_a_on_pg18) == ids
    with pytest.raises(RestoreFailed, match="rolled back"):  # a manifest that lies is still caught
        from movelib.ship.manifest import manifest_path
        bad = json.loads(manifest_path(releases.a).read_text())
        bad["row_counts"]["movement_library"] += 1
        copy = releases.a.parent / "lying.sql"
        shutil.copyfile(releases.a, copy)
        bad["dump_file"] = copy.name
        manifest_path(copy).write_text(json.dumps(bad))
        restore(plan_restore(holds_a_on_pg18, copy))


@pytest.mark.parametrize("swap", ["row-with-a-field-more", "row-content-edited", "line-removed", "line-added"])
def test_a_dump_changed_between_the_look_and_the_write_is_refused(
        holds_a_on_pg18: Target, releases: Releases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str) -> None:
    """The merge reads the dump a second time for the rows it adds: a file changed after its
    check (here, the revised name of an added version, or a draft's line taken out or doubled)
    is refused, nothing written. A merge of a few versions reads the whole file, its sha256
    compared, before it writes."""
    import movelib.ship.restore
    from movelib.base.errors import ArtifactError
    from movelib.ship.manifest import manifest_path
    from movelib.ship.restore import run_restore
    from movelib.ship.restore_plan import RestoreOptions

    copy = tmp_path / releases.b.name
    shutil.copyfile(releases.b, copy)
    shutil.copyfile(manifest_path(releases.b), manifest_path(copy))
    edit = b" (revised)\t" if swap == "row-with-a-field-more" else b" (REVISED)"

    def changed(text: bytes) -> bytes:
        """The file as changed after its check: rows edited, or a line of the drafts (the
        second read reads each table where the first found it) taken out or doubled."""
        if swap in ("line-removed", "line-added"):
            start = text.index(b"\n", text.index(b'COPY "movement_staging"')) + 1
            end = text.index(b"\n", start) + 1
            return text[:start] + (text[start:end] * 2 if swap == "line-added" else b"") + text[end:]
        return text.replace(b" (revised)", edit, 1)

    def checkpoint(step: str) -> None:
        if step == "target planned":
            copy.write_bytes(changed(copy.read_bytes()))

    monkeypatch.setattr(movelib.ship.restore, "_checkpoint", checkpoint)
    from support import settings

    before = library_state(holds_a_on_pg18)
    with pytest.raises(ArtifactError, match="changed while it was read"):
        run_restore(settings(), holds_a_on_pg18, RestoreOptions(copy, assume_yes=True), lambda _: None,
                    lambda _: None)
    assert library_state(holds_a_on_pg18) == before


def test_a_kept_version_whose_audit_chain_was_broken_behind_its_back_is_replaced(holds_a_on_pg18: Target, releases: Releases) -> None:
    """An audit row deleted with the triggers off (by a superuser): the full restore used to
    replace it with everything else; the merge replaces that version with the release's."""
    target = holds_a_on_pg18
    victim = rows(target, "SELECT slug FROM movement_current ORDER BY slug LIMIT 1")[0][0]
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM movement_audit_log WHERE slug = %s AND action = 'REVIEW_SUBMITTED'", (victim,))
    old_id = ids_by_version(target)[(victim, 1)]
    result = restore(plan_restore(target, releases.b))
    assert result.verification.ok and result.merged is not None
    assert result.merged.as_dict() == {"added": CHANGED + 1, "removed": 1, "kept": MOVEMENTS - 1,
                                       "pointers": CHANGED + 1, "retired": 0}
    assert library_state(target) == releases.b_library
    assert ids_by_version(target)[(victim, 1)] != old_id  # replaced: a new row, its chain whole
    from support import settings

    from movelib.seed.verify import verify
    assert verify(target, schema_file=settings().schema_file).ok  # content recomputed too


def _edited_behind_the_triggers(target: Target) -> tuple[str, list[tuple[Any, ...]]]:
    """A kept version's library row edited by a superuser with the triggers off: no longer its
    approved document's projection. Its slug, and the table's rows as they then are."""
    victim = rows(target, "SELECT slug FROM movement_current ORDER BY slug LIMIT 1")[0][0]
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE movement_library SET name = name || ' (PWNED)' WHERE slug = %s", (victim,))
    return victim, rows(target, "SELECT * FROM movement_library ORDER BY id")


def test_a_kept_version_whose_content_was_edited_behind_its_back_is_replaced(
        holds_a_on_pg18: Target, releases: Releases) -> None:
    """The merge compares each version's hash recomputed from its document, never the stored
    one alone: an edited row is not the release's content, and is replaced by it."""
    target = holds_a_on_pg18
    victim, _ = _edited_behind_the_triggers(target)
    old_id = ids_by_version(target)[(victim, 1)]
    result = restore(plan_restore(target, releases.b))
    assert result.merged is not None and result.merged.as_dict()["removed"] == 1
    assert ids_by_version(target)[(victim, 1)] != old_id  # the release's row, not the edited one
    assert library_state(target) == releases.b_library
    assert rows(target, "SELECT count(*) FROM movement_library WHERE name LIKE '%%(PWNED)'") == [(0,)]


def test_a_dump_whose_hash_is_the_comparisons_marker_keeps_no_edited_row(
        holds_a_on_pg18: Target, releases: Releases, tmp_path: Path) -> None:
    """The comparison names a row that is not its document's projection by a text, not a hash;
    a forged dump giving that very text as the version's content_hash (and no library digest
    in its manifest) must not make the edited row "the same content": the version is replaced,
    the database refuses the dump's row, and the target stays as it was."""
    target = holds_a_on_pg18
    victim, before = _edited_behind_the_triggers(target)
    forged = tmp_path / releases.a.name
    shutil.copy(releases.a, forged)
    shutil.copy(releases.a.with_name(releases.a.name.removesuffix(".sql") + ".manifest.json"),
                tmp_path)
    lines = forged.read_bytes().split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b'COPY "movement_library"'))
    columns = lines[start].split(b"(", 1)[1].split(b")", 1)[0].replace(b'"', b"").split(b", ")
    at, slug_at = columns.index(b"content_hash"), columns.index(b"slug")
    for i in range(start + 1, len(lines)):
        fields = lines[i].split(b"\t")
        if fields[slug_at] == victim.encode():
            fields[at] = b"not its approved document"
            lines[i] = b"\t".join(fields)
            break
    else:
        raise AssertionError(f"{victim} has no library row in the dump")
    forged.write_bytes(b"\n".join(lines))
    forge_manifest(forged, drop=("library_sha256",))
    with pytest.raises(RestoreFailed, match="content_hash"):
        restore(plan_restore(target, forged))
    assert rows(target, "SELECT * FROM movement_library ORDER BY id") == before


@contextmanager
def retiring(server: Server, tmp_path: Path) -> Iterator[tuple[Target, Target, Path, Path]]:
    """Two databases holding the repository's 8 movements, the source then seeded with the first
    five and --retire (three movements retired): source, target, that file, a dump of the source."""
    from support import CANONICAL

    five = tmp_path / "five.json"
    five.write_text(json.dumps(json.loads(CANONICAL.read_text())[:5]))
    with database(server, "movelib_template") as source_db, database(server, "movelib_template") as target_db:
        source = target_from_dsn(server.dsn(source_db), "--dsn")
        target = target_from_dsn(server.dsn(target_db), "--dsn")
        seed(source)
        seed(target)
        seed(source, five, retire=True)
        yield source, target, five, dump(source, MIGRATIONS, tmp_path, update_latest=False).path


def forge_manifest(dump_file: Path, *, drop: tuple[str, ...] = ()) -> None:
    """As a forger would: the manifest's size and sha256 made the edited dump's (keys dropped)."""
    from movelib.ship.manifest import file_sha256, manifest_path

    manifest = json.loads(manifest_path(dump_file).read_text())
    for key in drop:
        manifest.pop(key)
    manifest["size"], manifest["sha256"] = file_sha256(dump_file)
    manifest_path(dump_file).write_text(json.dumps(manifest))


def test_a_movement_the_release_retired_is_retired_with_its_audit_row(pg18: Server, tmp_path: Path) -> None:
    from support import settings

    from movelib.seed.verify import verify

    with retiring(pg18, tmp_path) as (source, target, five, release):
        ids = ids_by_version(target)
        result = restore(plan_restore(target, release))
        assert result.merged is not None and result.merged.as_dict() == {
            "added": 0, "removed": 0, "kept": 8, "pointers": 0, "retired": 3}
        assert library_state(target) == library_state(source)
        assert ids_by_version(target) == ids
        assert rows(target, "SELECT count(*) FROM movement_audit_log WHERE action = 'RETIRED'") == [(3,)]
        assert verify(target, data_file=five, schema_file=settings().schema_file).ok


def test_a_row_the_check_does_not_parse_is_refused_by_the_merge_naming_it(pg18: Server, tmp_path: Path) -> None:
    """The check before any connection counts every row's fields; the merge parses the rows it
    writes (here the audit rows of a movement the release retires): a version no number, which
    a forger could write with the manifest recomputed, is refused there by name, not taken for
    a file changed while it was read, and nothing is written."""
    with retiring(pg18, tmp_path) as (source, target, _, forged):
        retired = rows(source, "SELECT slug FROM movement_audit_log WHERE action = 'RETIRED' ORDER BY slug")[0][0]
        data = forged.read_bytes()
        start = data.index(b'\nCOPY "movement_audit_log" ')
        at = data.index(b"\t%s\t1\t" % retired.encode(), start)
        forged.write_bytes(data[:at] + b"\t%s\tx1\t" % retired.encode() + data[at + len(retired) + 4:])
        forge_manifest(forged)
        before = library_state(target), rows(target, "SELECT count(*) FROM movement_audit_log")
        with pytest.raises(ArtifactError, match=f"a row of movement_audit_log \\(slug '{retired}'\\) "
                                                "has the version 'x1', where movelib writes a whole number from 1 up"):
            restore(plan_restore(target, forged))
        assert (library_state(target), rows(target, "SELECT count(*) FROM movement_audit_log")) == before


def test_a_restore_says_how_far_it_has_come(pg18: Server, holds_a_on_pg18: Target, releases: Releases) -> None:
    """The steps that take long on a large dump report to the progress a task shows (a live
    line after a second): the check of the file and the writing in MB of the dump read, to its
    size; a merge also counts the movements it compared (every thousandth)."""
    from support import settings

    from movelib.ship.dumpreader import CHECKING, WRITING
    from movelib.ship.restore import run_restore
    from movelib.ship.restore_plan import COMPARING, RestoreOptions

    size = releases.b.stat().st_size // 1_000_000
    assert size >= 1  # enough for a step of 1 MB to show
    with database(pg18) as empty:
        for target, merges in ((holds_a_on_pg18, True), (target_from_dsn(pg18.dsn(empty), "--dsn"), False)):
            said: list[tuple[str, int, int | None]] = []
            result = run_restore(settings(), target, RestoreOptions(releases.b, assume_yes=True),
                                 lambda _: None, lambda _: None,
                                 progress=lambda *step, said=said: said.append(step))
            assert result is not None and (result.merged is not None) is merges
            assert library_state(target) == releases.b_library
            for stage in (CHECKING, WRITING):
                steps = [(done, total) for s, done, total in said if s == stage]
                assert steps[-1] == (size, size) and steps.count((size, size)) == 1, stage
                assert [done for done, _ in steps] == sorted(done for done, _ in steps), stage
            compared = [(done, total) for s, done, total in said if s == COMPARING]
            assert compared == ([(1000, None), (1000, 1000)] if merges else []), compared
            assert [s for s, _, _ in said] == sorted((s for s, _, _ in said),
                                                     key=[CHECKING, COMPARING, WRITING].index)


SLUGS = st.sampled_from(["a", "ab", "b-1", "squat", "squat-2", "x"])
LINES = st.lists(st.tuples(SLUGS | st.sampled_from(["1", "22"]), SLUGS | st.sampled_from(["1", "2"]),
                           st.sampled_from(["1", "2", "10"]),
                           st.sampled_from(["", "squat\t1", "a\t", "tail"])), max_size=12)
NEEDLE_KINDS = ["version", "slug", "first column"]  # added; retired (audit); movement_current


@given(lines=LINES, wanted=st.lists(st.tuples(SLUGS, st.sampled_from(["1", "2"]),
                                              st.sampled_from(NEEDLE_KINDS)), min_size=1, max_size=8))
def test_the_lines_a_merge_reads_are_the_same_found_one_needle_at_a_time_or_all_at_once(
        lines: list[tuple[str, str, str, str]], wanted: list[tuple[str, str, str]]) -> None:
    """The writing pass finds the lines of the versions it adds by their bytes: a few needles
    one scan each, more in one scan (a regular expression); both give the lines that hold a
    needle, in order, each once (needles may overlap, share a line, or match a line's start)."""
    block = b"".join(("\t".join(line) + "\n").encode() for line in lines)
    spelled = {"version": b"\t%s\t%s\t", "slug": b"\t%s\t", "first column": b"\n%s\t"}
    needles = [spelled[kind] % ((s.encode(), v.encode()) if kind == "version" else (s.encode(),))
               for s, v, kind in wanted]
    expected = [line for line in block.split(b"\n")[:-1]
                if any(needle in b"\n" + line + b"\n" for needle in needles)]
    assert merge_module._lines_with(block, needles) == expected
    for needle in needles:  # each alone: the one-scan-per-needle way
        alone = [line for line in block.split(b"\n")[:-1] if needle in b"\n" + line + b"\n"]
        assert merge_module._lines_with(block, [needle]) == alone


# What the target may hold, edited behind its triggers' back, for the merge's two half checks
# (the library before the writes, the written slugs after them) to be held to the whole check
# after the writes: {kept} is a slug the release leaves alone, {changed} one it writes.
HALVES = {
    "nothing": "",
    "a kept version's chain broken": "DELETE FROM movement_audit_log WHERE slug = '{kept}' "
                                     "AND action = 'REVIEW_SUBMITTED'",
    "a written slug's chain broken": "DELETE FROM movement_audit_log WHERE slug = '{changed}' "
                                     "AND action = 'REVIEW_SUBMITTED'",
    "a kept slug's pointer behind": "UPDATE movement_current SET version = 7 WHERE slug = '{kept}'",
    "a kept slug's draft unpublished": "UPDATE movement_staging SET status = 'approved' "
                                       "WHERE slug = '{kept}'",
    "a published trail without its row": (
        "INSERT INTO movement_audit_log (action, slug, version, actor, details) "
        "VALUES ('PUBLISHED', '{kept}', 7, 'x', '{{}}')"),
    # a draft of a kept slug that a written version's row leans on (its document the written
    # version's with a key added): the merge replaces that version, and the draft is left
    # published without a row, which the whole check finds after the writes and the first half
    # finds (strictly) before them
    "a kept slug's draft a written row leans on": (
        "INSERT INTO movement_staging (slug, version, status, document, content_hash, seed_run_id) "
        "SELECT '{kept}', 9, 'published', document || '{{\"x\": \"y\"}}', content_hash, seed_run_id "
        "FROM movement_staging WHERE slug = '{changed}' AND version = 1; "
        "UPDATE movement_staging SET status = 'approved' WHERE slug = '{changed}' AND version = 1; "
        "UPDATE movement_library SET staging_id = (SELECT id FROM movement_staging "
        "WHERE slug = '{kept}' AND version = 9) WHERE slug = '{changed}' AND version = 1"),
    "a kept row on a written slug's draft": (
        "UPDATE movement_library SET staging_id = -staging_id WHERE slug IN ('{kept}', '{changed}'); "
        "UPDATE movement_library l SET staging_id = s.id FROM movement_staging s "
        "WHERE s.slug = CASE l.slug WHEN '{kept}' THEN '{changed}' ELSE '{kept}' END "
        "AND l.slug IN ('{kept}', '{changed}')"),
}


@pytest.mark.parametrize("edit", HALVES)
def test_the_merges_two_half_checks_say_what_the_whole_check_says(
        pg18: Server, holds_a_on_pg18: Target, releases: Releases, monkeypatch: pytest.MonkeyPatch,
        edit: str) -> None:
    """A merge of a few versions checks the library while it reads the dump and the slugs it
    writes after its writes; with anything found, or never (the whole check after the writes,
    as before), the restore's outcome is the same: the report, or the refusal."""
    import movelib.ship.restore_write as restore_write
    from movelib.base.errors import MovelibError

    target = holds_a_on_pg18
    kept = rows(target, "SELECT slug FROM movement_current ORDER BY slug LIMIT 1")[0][0]
    assert kept not in releases.changed
    if HALVES[edit]:
        with psycopg.connect(target.conninfo, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(HALVES[edit].format(kept=kept, changed=releases.changed[0]))
    from movelib.seed.verify import check as real

    wholes: list[bool] = []

    def whole_check(*args: Any, **kwargs: Any) -> Any:
        wholes.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr("movelib.ship.restore_write.check", whole_check)

    def outcome(into: Target) -> tuple[Any, ...]:
        try:
            result = restore(plan_restore(into, releases.b))
        except MovelibError as exc:
            return ("refused", type(exc).__name__, str(exc).replace(into.dbname, "DB"))
        report = result.verification.as_dict()
        report.pop("target")
        merged = result.merged.as_dict() if result.merged else None
        return ("restored", report, merged, library_state(into))

    with database(pg18, target.dbname) as copy:
        halves = outcome(target)
        used_halves = not wholes
        monkeypatch.setattr(restore_write, "MOST_TOUCHED", -1)  # never the halves
        wholes.clear()
        whole = outcome(target_from_dsn(pg18.dsn(copy), "--dsn"))
    assert halves == whole
    assert used_halves == (edit == "nothing")  # the halves alone decide only when both are clean


def test_the_audit_trails_room_is_theirs_alone(migrated_db: Target) -> None:
    """The audit trails' query runs with 64 MB of work_mem in a savepoint of the caller's
    transaction (a restore's); the setting the transaction had is back after it, not 64 MB to
    its end (a released savepoint keeps a SET LOCAL)."""
    from movelib.seed.audit_chains import audit_trails

    with psycopg.connect(migrated_db.conninfo) as conn:
        conn.execute("SET LOCAL work_mem = '5MB'")  # not the default, which a RESET gives
        assert audit_trails(conn).total == 0
        assert conn.execute("SHOW work_mem").fetchone() == ("5MB",)
