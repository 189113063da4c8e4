"""Seed dumps: written atomically, checked before use, restored all-or-nothing, across versions."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from support import (
    CANONICAL,
    MIGRATION_NAMES,
    ROOT,
    SENTINEL_PASSWORD,
    Cli,
    Server,
    assert_no_secret,
    database,
    git,
    ids_by_version,
    library_state,
    process_env,
    restore_connected,
    rows,
    seed,
    settings,
    table_hashes,
)

from movelib.base.errors import (
    ArtifactError,
    ConfirmationRequired,
    InvalidTarget,
    ReleaseError,
    RestoreFailed,
)
from movelib.database.migrations import migrate
from movelib.database.psql import tool_path
from movelib.database.target import Target, target_from_dsn
from movelib.ship.dump import dump
from movelib.ship.manifest import check_artifact, file_sha256, manifest_path
from movelib.ship.release import release
from movelib.ship.restore import plan_restore, restore

SETTINGS = settings()
MIGRATIONS = ROOT / "migrations"


def restore_into(target: Target, dump_file: Path) -> None:
    restore(plan_restore(target, dump_file))


def older_library(tmp_path: Path) -> Path:
    """A data file holding the first five placeholders only."""
    data = json.loads(CANONICAL.read_text())[:5]
    path = tmp_path / "older.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def seeded_dump(migrated_db: Target, tmp_path: Path) -> Path:
    seed(migrated_db)
    return dump(migrated_db, MIGRATIONS, tmp_path / "dumps").path


def test_dump_writes_the_file_its_manifest_and_latest(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    result = dump(migrated_db, MIGRATIONS, tmp_path)
    assert result.path.name.startswith("movements_seed_") and result.path.suffix == ".sql"
    manifest = json.loads(result.manifest_path.read_text())
    size, sha = file_sha256(result.path)
    assert (manifest["size"], manifest["sha256"]) == (size, sha)
    assert manifest["row_counts"]["movement_library"] == 8
    assert manifest["row_counts"]["movement_audit_log"] == 40
    assert manifest["migration_version"] == MIGRATION_NAMES[-1]
    assert manifest["data_sha256"] == file_sha256(CANONICAL)[1]
    assert manifest["source_server_version"].startswith("18.")
    assert manifest["created_at"].endswith("Z") and manifest["format_version"] == 1
    assert (tmp_path / "movements_seed_latest.sql").read_bytes() == result.path.read_bytes()
    assert check_artifact(tmp_path / "movements_seed_latest.sql").sha256 == sha
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    text = result.path.read_text()
    assert "\\restrict" not in text and "transaction_timeout" not in text
    assert_no_secret(text + result.manifest_path.read_text())


@pytest.mark.parametrize(("source", "destination"), [("pg18", "pg15"), ("pg15", "pg18")])
def test_round_trip_to_another_server_is_exact(request: pytest.FixtureRequest, tmp_path: Path, source: str, destination: str) -> None:
    src: Server = request.getfixturevalue(source)
    dst: Server = request.getfixturevalue(destination)
    src_db, dst_db = src.create_database("movelib_template"), dst.create_database()
    try:
        src_target = target_from_dsn(src.dsn(src_db), "--dsn")
        dst_target = target_from_dsn(dst.dsn(dst_db), "--dsn")
        seed(src_target)
        restore_into(dst_target, dump(src_target, MIGRATIONS, tmp_path).path)
        assert table_hashes(dst_target) == table_hashes(src_target)
        from movelib.seed.verify import verify

        assert verify(dst_target, data_file=CANONICAL, schema_file=SETTINGS.schema_file).ok
        # the restored database is fully bookkept: nothing to migrate, nothing to seed
        assert migrate(dst_target, MIGRATIONS).applied == []
        before = table_hashes(dst_target)
        seed(dst_target)
        assert table_hashes(dst_target) == before
        # and it keeps working: new movements get fresh ids after the restored ones
        data = json.loads(CANONICAL.read_text())
        data.append({**data[0], "slug": "front-squat", "name": "Front Squat"})
        more = tmp_path / "more.json"
        more.write_text(json.dumps(data))
        seed(dst_target, more)
        assert verify(dst_target, data_file=more, schema_file=SETTINGS.schema_file).ok
    finally:
        src.drop_database(src_db)
        dst.drop_database(dst_db)


def test_restore_merges_into_an_older_library_keeping_its_ids(seeded_dump: Path, migrated_db: Target, pg18: Server, tmp_path: Path) -> None:
    other = target_from_dsn(pg18.dsn(pg18.create_database("movelib_template")), "--dsn")
    seed(other, older_library(tmp_path))
    ids = ids_by_version(other)
    audit = rows(other, "SELECT id, action, slug, version, actor, occurred_at FROM movement_audit_log ORDER BY id")
    restore_into(other, seeded_dump)
    assert library_state(other) == library_state(migrated_db)
    after = ids_by_version(other)
    assert {k: after[k] for k in ids} == ids  # the five it held keep their ids
    assert len(after) == 8 and min(i for k, i in after.items() if k not in ids) > max(ids.values())
    # their audit history is the target's own, untouched; the three added bring their chains
    assert rows(other, "SELECT id, action, slug, version, actor, occurred_at FROM movement_audit_log "
                       "ORDER BY id")[:len(audit)] == audit
    assert rows(other, "SELECT count(*) FROM movement_audit_log")[0][0] == 40


def _tamper(dump_file: Path, how: str) -> None:
    data = bytearray(dump_file.read_bytes())
    if how == "one-byte-changed":
        data[len(data) // 2] ^= 0x01
        dump_file.write_bytes(bytes(data))
    elif how == "truncated":
        dump_file.write_bytes(bytes(data[: len(data) - 100]))
    elif how == "appended-to":
        dump_file.write_bytes(bytes(data) + b"DROP TABLE movement_library;\n")
    elif how == "manifest-missing":
        manifest_path(dump_file).unlink()
    elif how == "manifest-edited":
        manifest = json.loads(manifest_path(dump_file).read_text())
        manifest["row_counts"]["movement_library"] = 9
        manifest_path(dump_file).write_text(json.dumps(manifest))
    elif how == "manifest-not-json":
        manifest_path(dump_file).write_text("{not json")


TAMPERINGS = ["one-byte-changed", "truncated", "appended-to", "manifest-missing", "manifest-not-json"]


@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_dump_is_refused_before_any_connection(cli: Cli, seeded_dump: Path, migrated_db: Target, how: str) -> None:
    _tamper(seeded_dump, how)
    with pytest.raises(ArtifactError):
        check_artifact(seeded_dump)
    before = table_hashes(migrated_db)
    result = cli("restore", "--dump-file", str(seeded_dump), "--dsn", migrated_db.conninfo, "--yes")
    assert result.code == 1
    assert not restore_connected(result.stdout)  # refused before it connected
    assert "Traceback" not in result.output
    assert table_hashes(migrated_db) == before


def test_an_edited_manifest_is_caught_by_the_restored_counts(seeded_dump: Path, pg18: Server, tmp_path: Path) -> None:
    """A manifest whose counts lie (sha256 still right) fails after the load, rolled back."""
    target = target_from_dsn(pg18.dsn(pg18.create_database("movelib_template")), "--dsn")
    seed(target, older_library(tmp_path))
    before = table_hashes(target)
    _tamper(seeded_dump, "manifest-edited")
    with pytest.raises(RestoreFailed, match="movement_library 8 \\(manifest 9\\)"):
        restore_into(target, seeded_dump)
    assert table_hashes(target) == before


def _recompute_manifest(dump_file: Path) -> None:
    mpath = manifest_path(dump_file)
    manifest = json.loads(mpath.read_text())
    manifest["size"], manifest["sha256"] = file_sha256(dump_file)
    mpath.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda t: t.replace("\tsquat\t", "\tsquat\tEXTRA\t", 1), id="bad-copy-row"),
        pytest.param(lambda t: t.replace("CREATE INDEX movement_audit_log_movement_idx",
                                         "CREATE INDEX nonsense_idx ON no_such_table (x);\nCREATE INDEX movement_audit_log_movement_idx"), id="bad-ddl"),
        pytest.param(lambda t: t.replace("-- end of movelib seed dump", "SELECT 1/0;"), id="failing-last-statement"),
        pytest.param(lambda t: t.rsplit("\\.\n", 1)[0], id="unterminated-copy"),
    ],
)
def test_a_dump_failing_partway_leaves_the_target_unchanged(seeded_dump: Path, pg18: Server, tmp_path: Path, edit: Callable[[str], str]) -> None:
    target = target_from_dsn(pg18.dsn(pg18.create_database("movelib_template")), "--dsn")
    seed(target, older_library(tmp_path))
    before = table_hashes(target)
    # bytes, not write_text: on Windows that writes CRLF, refused at line 1 before any load
    seeded_dump.write_bytes(edit(seeded_dump.read_bytes().decode()).encode())
    _recompute_manifest(seeded_dump)
    with pytest.raises((RestoreFailed, ArtifactError)):
        restore_into(target, seeded_dump)
    assert table_hashes(target) == before


def test_restore_without_yes_and_without_a_tty_refuses_at_once(cli: Cli, seeded_dump: Path, migrated_db: Target) -> None:
    before = table_hashes(migrated_db)
    started = time.monotonic()
    result = cli("restore", "--dump-file", str(seeded_dump), "--dsn", migrated_db.conninfo)
    assert time.monotonic() - started < 2
    assert result.code == 1 and "pass --yes" in result.stderr
    assert table_hashes(migrated_db) == before


def test_confirmation_reads_a_terminal_answer() -> None:
    import io

    from movelib.base.prompt import confirm

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    confirm("Replace?", assume_yes=False, stdin=Tty("yes\n"), stdout=io.StringIO())
    with pytest.raises(ConfirmationRequired, match="not confirmed"):
        confirm("Replace?", assume_yes=False, stdin=Tty("y\n"), stdout=io.StringIO())


def test_cli_dump_and_restore(cli: Cli, seeded_dump: Path, migrated_db: Target, pg15: Server, tmp_path: Path) -> None:
    out_dir = tmp_path / "cli-dumps"
    dumped = cli("dump", "--dsn", migrated_db.conninfo, "--output-dir", str(out_dir))
    assert dumped.code == 0, dumped.output
    assert "rows: movement_seed_run 1, movement_staging 8, movement_audit_log 40, movement_library 8, movement_current 8" in dumped.stdout
    fresh = pg15.create_database()
    try:
        restored = cli("restore", "--dump-file", str(out_dir / "movements_seed_latest.sql"),
                       "--dsn", pg15.dsn(fresh), "--yes")
        assert restored.code == 0, restored.output
        assert "movement_library       now   absent  ->         8" in restored.stdout
        assert "restore: done; row counts match the manifest; verify: ok (library 8, audit 40)" in restored.stdout
        assert_no_secret(dumped.output + restored.output)
        verified = cli("verify", "--dsn", pg15.dsn(fresh), "--file", str(CANONICAL))
        assert verified.code == 0, verified.output
    finally:
        pg15.drop_database(fresh)


def test_the_dump_also_applies_with_psql(seeded_dump: Path, pg15: Server, migrated_db: Target) -> None:
    fresh = pg15.create_database()
    try:
        target = target_from_dsn(pg15.dsn(fresh), "--dsn")
        from movelib.database.psql import child_env

        proc = subprocess.run(
            [str(tool_path("psql", None)), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(seeded_dump)],
            env=child_env(target), capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert table_hashes(target) == table_hashes(migrated_db)
    finally:
        pg15.drop_database(fresh)


def test_a_failed_dump_leaves_no_file(empty_db: Target, tmp_path: Path) -> None:
    from movelib.base.errors import SchemaNotApplied

    with pytest.raises(SchemaNotApplied):
        dump(empty_db, MIGRATIONS, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_source_missing_migrations_is_refused(migrated_db: Target, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    (folder / "0002.more.sql").write_text("-- depends: 0001.movement-library\nSELECT 1;\n")
    with pytest.raises(ArtifactError, match="run `inv migrate` on it first"):
        dump(migrated_db, folder, tmp_path / "out")


def test_psql_and_psycopg_readers_write_the_same_dump(migrated_db: Target, tmp_path: Path) -> None:
    data = json.loads(CANONICAL.read_text())
    data[0]["instructions"] = ["tab\there", "new\nline \\ back\\slash", "unicode ü 🏋️", "\\."]
    unusual = tmp_path / "unusual.json"
    unusual.write_text(json.dumps(data))
    seed(migrated_db, unusual)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    by_psql = dump(migrated_db, MIGRATIONS, tmp_path / "psql", now=now, reader="psql")
    by_psycopg = dump(migrated_db, MIGRATIONS, tmp_path / "psycopg", now=now, reader="psycopg")
    assert by_psql.path.read_bytes() == by_psycopg.path.read_bytes()
    assert by_psql.manifest == by_psycopg.manifest
    assert by_psql.manifest.row_counts["movement_audit_log"] == 40


def test_a_dsn_psql_cannot_take_is_dumped_through_psycopg(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    conninfo = migrated_db.conninfo
    joiner = " " if "://" not in conninfo else ("&" if "?" in conninfo else "?")
    dsn = f"{conninfo}{joiner}keepalives=1"
    target = target_from_dsn(dsn, "--dsn")
    with pytest.raises(InvalidTarget, match="keepalives"):
        target.libpq_env()
    result = dump(target, MIGRATIONS, tmp_path)  # auto: psql is installed, but cannot be used
    assert result.manifest.row_counts["movement_library"] == 8


@pytest.mark.posix  # the stand-in psql is a shell script
def test_a_failing_psql_leaves_no_dump_and_no_password(migrated_db: Target, tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "postgres").write_text("")
    (fake / "psql").write_text('#!/bin/sh\necho "FATAL: password \"$PGPASSWORD\" refused" >&2\nexit 2\n')
    (fake / "psql").chmod(0o755)
    with pytest.raises(ArtifactError, match="psql could not read the tables") as info:
        dump(migrated_db, MIGRATIONS, tmp_path / "out", reader="psql", bin_dir=str(fake))
    assert_no_secret(str(info.value))
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.linux  # /proc shows every process's argv
def test_no_child_process_ever_carries_the_password(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    """psql is the one child movelib spawns with a target: its argv (which /proc shows every user
    of the machine) must be clean. The run and all its descendants are read while they live."""
    seed(migrated_db)
    env = {"PLANNING_DATABASE_URL": migrated_db.conninfo}
    jobs = [
        [sys.executable, "-m", "invoke", "db.psql", "-c", "SELECT pg_sleep(1.5)"],
        [sys.executable, "-m", "invoke", "dump", "--output-dir", str(tmp_path)],
    ]
    seen: list[str] = []
    for job in jobs:
        proc = subprocess.Popen(job, cwd=ROOT, env=process_env({**env, "INVOKE_PATHS_DOTENV": str(tmp_path / "x")}),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            run = psutil.Process(proc.pid)
            while proc.poll() is None:
                for process in [run, *run.children(recursive=True)]:
                    try:
                        argv = " ".join(process.cmdline())
                    except psutil.Error:
                        continue
                    seen.append(argv)
                    assert SENTINEL_PASSWORD not in argv and "p4ss" not in argv, argv
                time.sleep(0.02)
            out, err = proc.communicate()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert_no_secret(out.decode() + err.decode())
    assert any("psql" in a and "--no-psqlrc" in a for a in seen), "never saw the psql child"
    for dumped in tmp_path.glob("movements_seed_*"):
        assert_no_secret(dumped.read_text())


def test_a_signed_release_says_production_needs_the_key_pinned(
        ssh_keygen: None, release_repo: Path, migrated_db: Target, tmp_path: Path) -> None:
    """The key is not in allowed_signers: staging and local read that file, production reads only
    its pinned signers (the advice said the file would do for production)."""
    from support import make_key

    seed(migrated_db)
    key = make_key(tmp_path / "keys")
    result = release(migrated_db, release_repo, release_repo / "migrations", "v1.0", sign_key=key,
                     allowed_signers=tmp_path / "nobody")
    said = " ".join(" ".join(result.lines(tmp_path / "nobody")).split())
    assert "add it there for staging and local restores; a production database accepts it once it is " \
           "pinned there (`inv trust.pin KEY.pub --principal NAME`)" in said, said
    assert "before a production restore will accept" not in said


def test_release_writes_a_versioned_dump_and_tags_it(release_repo: Path, migrated_db: Target) -> None:
    seed(migrated_db)
    result = release(migrated_db, release_repo, release_repo / "migrations", "v1.0", tag=True)
    assert result.dump.path.parent == release_repo / "releases" / "v1.0"
    assert json.loads(result.dump.manifest_path.read_text())["release"] == "v1.0"
    assert git(release_repo, "cat-file", "-t", "v1.0-seed").strip() == "tag"  # annotated
    assert "Movement library v1.0" in git(release_repo, "tag", "-n1", "v1.0-seed")
    assert git(release_repo, "status", "--porcelain") == ""
    assert result.dump.path.name in git(release_repo, "show", "--name-only", "v1.0-seed")
    with pytest.raises(ReleaseError, match="already holds a dump"):
        release(migrated_db, release_repo, release_repo / "migrations", "v1.0", tag=True)


def test_a_release_ships_compressed_and_restores_and_verifies_in_both_forms(
        cli: Cli, release_repo: Path, migrated_db: Target, pg18: Server, tmp_path: Path) -> None:
    """The release folder holds x.sql.gz and its manifest, which records the SQL's sha256 and
    the compressed file's; restore and verify read the .gz, and the gunzipped SQL too."""
    import gzip

    seed(migrated_db)
    result = release(migrated_db, release_repo, release_repo / "migrations", "v1.0", tag=True)
    shipped = result.dump.path
    assert shipped.name.endswith(".sql.gz") and sorted(p.name for p in shipped.parent.iterdir()) == sorted(
        [shipped.name, result.dump.manifest_path.name])
    manifest = json.loads(result.dump.manifest_path.read_text())
    sql = gzip.decompress(shipped.read_bytes())
    assert manifest["sha256"] == hashlib.sha256(sql).hexdigest() and manifest["size"] == len(sql)
    assert manifest["compressed"] == {"file": shipped.name, "format": "gzip", "size": shipped.stat().st_size,
                                      "sha256": hashlib.sha256(shipped.read_bytes()).hexdigest()}
    assert shipped.stat().st_size * 3 < len(sql)
    assert shipped.name in git(release_repo, "show", "--name-only", "v1.0-seed")
    plain = tmp_path / shipped.name.removesuffix(".gz")  # gunzip -c: the SQL, the same manifest
    plain.write_bytes(sql)
    shutil.copy(result.dump.manifest_path, tmp_path)
    for dump_file in (shipped, plain):
        with database(pg18) as name:
            target = pg18.dsn(name)
            restored = cli("restore", str(dump_file), "--dsn", target, "--yes")
            assert restored.code == 0, restored.output
            assert cli("verify", "--dsn", target, "--file", str(CANONICAL)).code == 0
            assert cli("diff", "--from", migrated_db.conninfo, "--to", target).code == 0
    assert cli("verify", "--dsn", migrated_db.conninfo, "--release", str(result.dump.manifest_path)).code == 0


@pytest.mark.parametrize("damage", ["a-flipped-byte", "truncated", "another-sql-compressed", "trailing-bytes"])
def test_a_damaged_compressed_dump_is_refused_before_anything_is_touched(
        cli: Cli, release_repo: Path, migrated_db: Target, empty_db: Target, damage: str) -> None:
    import gzip

    seed(migrated_db)
    shipped = release(migrated_db, release_repo, release_repo / "migrations", "v1.0").dump.path
    data = shipped.read_bytes()
    if damage == "a-flipped-byte":
        data = data[:200] + bytes([data[200] ^ 1]) + data[201:]
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "another-sql-compressed":
        data = gzip.compress(gzip.decompress(data).replace(b"Back Squat", b"Back Squad"), mtime=0)
    else:
        data += b"\0" * 16
    shipped.write_bytes(data)
    before = table_hashes(empty_db)
    result = cli("restore", str(shipped), "--dsn", empty_db.conninfo, "--yes")
    assert result.code == 1, result.output
    assert "compressed" in result.stderr and "Traceback" not in result.output, result.output
    assert table_hashes(empty_db) == before


def test_release_tag_refuses_a_file_git_should_not_hold(
        release_repo: Path, migrated_db: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    from movelib.ship import compress

    seed(migrated_db)
    monkeypatch.setattr(compress, "GIT_FILE_LIMIT", 1000)  # the canonical library is about 4 kB compressed
    head = git(release_repo, "rev-parse", "HEAD")
    with pytest.raises(ReleaseError, match=r"more than the 0 MB a file committed to git should be .* release asset"):
        release(migrated_db, release_repo, release_repo / "migrations", "v1.0", tag=True)
    assert not list((release_repo / "releases" / "v1.0").iterdir())
    assert git(release_repo, "rev-parse", "HEAD") == head and git(release_repo, "tag") == ""
    assert release(migrated_db, release_repo, release_repo / "migrations", "v1.0").tag is None  # untagged: shipped elsewhere
    shutil.rmtree(release_repo / "releases")
    # where Git LFS tracks the releases, --tag commits them (the pointer is what git holds)
    (release_repo / ".gitattributes").write_text("releases/**/*.sql.gz filter=lfs diff=lfs merge=lfs -text\n")
    git(release_repo, "add", ".gitattributes")
    git(release_repo, "commit", "-qm", "LFS for releases")
    assert release(migrated_db, release_repo, release_repo / "migrations", "v1.1", tag=True).tag == "v1.1-seed"


@pytest.mark.parametrize(
    ("version", "prepare", "message"),
    [
        pytest.param("1.0", None, "is not like v1.0", id="bad-version"),
        pytest.param("v2.0", "dirty", "uncommitted changes", id="dirty-tree"),
        pytest.param("v3.0", "tagged", "tag v3.0-seed already exists", id="existing-tag"),
    ],
)
def test_release_refusals(release_repo: Path, migrated_db: Target, version: str, prepare: str | None, message: str) -> None:
    if prepare == "dirty":
        (release_repo / "stray.txt").write_text("x")
    if prepare == "tagged":
        git(release_repo, "tag", "-a", "v3.0-seed", "-m", "earlier")
    with pytest.raises(ReleaseError, match=message):
        release(migrated_db, release_repo, release_repo / "migrations", version, tag=True)
    assert not (release_repo / "releases").exists()


@pytest.mark.parametrize(("version", "ok"), [
    pytest.param("v1", True, id="major"),
    pytest.param("v1.2.3", True, id="major-minor-patch"),
    pytest.param("v2.0-rc1", True, id="pre-release"),
    pytest.param("v1.0\n", False, id="trailing-newline"),
    pytest.param("v1.0 ", False, id="trailing-space"),
    pytest.param("v1.0/../x", False, id="path-after-a-version"),
    pytest.param("1.0", False, id="no-v"),
    pytest.param("v1.2.3.4", False, id="four-numbers"),
    pytest.param("v0.1", True, id="zero-major"),
    pytest.param("v2.0-rc.1", True, id="dotted-pre-release"),
    # one spelling per version: these would name a version another spelling names too
    pytest.param("v\uff11.0", False, id="fullwidth-digit"),
    pytest.param("v\u0663", False, id="arabic-indic-digit"),
    pytest.param("v01.10", False, id="leading-zero"),
    pytest.param("v1.00", False, id="leading-zero-minor"),
    pytest.param("v1.0+b2", False, id="build-metadata"),
    pytest.param("v1.0-", False, id="empty-pre-release"),
])
def test_one_release_version_pattern_judges_the_whole_string_everywhere(tmp_path: Path, version: str,
                                                                         ok: bool) -> None:
    from movelib.ship.release import VERSION, check_release, is_version, release_manifest_path
    from movelib.ship.release_check import release_manifest

    assert is_version(version) is ok
    assert (VERSION.match(version) is not None) is ok  # even a .match caller gets the whole string
    # the manifest schema judges the release field the same way
    from movelib.ship.manifest import SCHEMA_FILE

    field = json.loads(SCHEMA_FILE.read_text())["properties"]["release"]["anyOf"][0]
    assert (re.fullmatch(field["pattern"].strip("^$"), version) is not None) is ok
    if ok:
        return
    for refuses in (lambda: check_release(tmp_path, version, tag=False),
                    lambda: release_manifest_path(tmp_path, version),
                    lambda: release_manifest(tmp_path, version)):
        with pytest.raises(ReleaseError, match="is not"):
            refuses()
    assert not (tmp_path / "releases").exists()


def test_workflows_pass_schema_and_security_checks() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} >= {"generate-seed-dump.yml", "tests.yml", "seed-plan.yml"}
    bin_dir = Path(sys.executable).parent
    schema = subprocess.run([str(bin_dir / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             *map(str, workflows)], capture_output=True, text=True, check=False)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audit = subprocess.run([str(bin_dir / "zizmor"), "--offline", "--min-severity", "medium",
                            str(ROOT / ".github" / "workflows")], capture_output=True, text=True, check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    text = (ROOT / ".github" / "workflows" / "generate-seed-dump.yml").read_text()
    for needle in ("workflow_dispatch", "stream5", "movement-seed-dump-${{ github.sha }}",
                   "retention-days: 30", "inv seed", "inv dump", "inv verify"):
        assert needle in text
    run_lines = [line.strip() for line in text.splitlines() if line.strip().startswith(("run:", "inv "))]
    for line in run_lines:
        command = line.removeprefix("run:").strip()
        assert command in ("|", "") or command.startswith(("inv ", "python -m pip install")), command

    import yaml

    for workflow in workflows:  # github context reaches a script through env, never inlined
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            for step in job.get("steps", []):
                assert "${{" not in step.get("run", ""), f"{workflow.name}: {step.get('name')}"
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, workflow.name
    plan = (ROOT / ".github" / "workflows" / "seed-plan.yml").read_text()
    parsed = yaml.safe_load(plan)
    assert parsed["permissions"] == {} and parsed["jobs"]["plan"]["permissions"] == {"contents": "read"}
    for needle in ('"data/**"', '"schemas/**"', '"migrations/**"', "github.event.pull_request.base.sha",
                   "inv validate", "inv seed --dry-run --format markdown", "$GITHUB_STEP_SUMMARY"):
        assert needle in plan, needle


# -- a dump with Windows line endings --------------------------------------------------------


def test_a_crlf_dump_is_named_as_such_and_still_refused(cli: Cli, seeded_dump: Path, migrated_db: Target) -> None:
    """What git's core.autocrlf or an editor does to a dump: refused (its sha256 is not the
    manifest's), and the message says what changed and how to undo it."""
    seeded_dump.write_bytes(seeded_dump.read_bytes().replace(b"\n", b"\r\n"))
    before = table_hashes(migrated_db)
    result = cli("restore", "--dump-file", str(seeded_dump), "--dsn", migrated_db.conninfo, "--yes")
    assert result.code == 1 and not restore_connected(result.stdout), result.output
    assert "Windows (CRLF) line endings" in result.stderr and "dos2unix" in result.stderr, result.stderr
    assert "with LF line endings it is the dump the manifest describes" in result.stderr, result.stderr
    assert table_hashes(migrated_db) == before


def test_a_crlf_dump_whose_manifest_was_recomputed_shows_the_carriage_return(seeded_dump: Path, migrated_db: Target) -> None:
    """The sha256 matches the CRLF bytes (the manifest was recomputed): the walk refuses the
    first line, and the quoted lines differ visibly (``\\r``), not only in an invisible byte."""
    seeded_dump.write_bytes(seeded_dump.read_bytes().replace(b"\n", b"\r\n"))
    _recompute_manifest(seeded_dump)
    before = table_hashes(migrated_db)
    with pytest.raises(ArtifactError) as refused:
        restore_into(migrated_db, seeded_dump)
    message = str(refused.value)
    assert "line 1: the dump has Windows (CRLF) line endings" in message, message
    assert "\\r'" in message and "dos2unix" in message, message
    assert table_hashes(migrated_db) == before
