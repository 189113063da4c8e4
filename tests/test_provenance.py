"""Provenance: every seed that writes and every restore records where the library came from, in
the database, and `inv verify`, `inv verify --release` and `inv db.status` say it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    CANONICAL,
    MIGRATION_NAMES,
    ROOT,
    Cli,
    Server,
    assert_no_secret,
    database,
    git,
    rows,
    seed,
    table_hashes,
)

from movelib.database.migrations import migrate
from movelib.database.provenance import run_by
from movelib.database.target import Target, target_from_dsn
from movelib.seed.verify import VerifyReport
from movelib.ship.dump import dump
from movelib.ship.manifest import dump_for, file_sha256
from movelib.ship.restore import plan_restore, restore

MIGRATIONS = ROOT / "migrations"
PROVENANCE = ("SELECT kind, data_file, data_sha256, artifact_file, artifact_sha256, release, tag, "
              "source_environment, source_server_version, run_by, seed_run_id "
              "FROM movement_provenance ORDER BY id")
CANONICAL_SHA = file_sha256(CANONICAL)[1]


def older(tmp_path: Path) -> Path:
    path = tmp_path / "older.json"
    path.write_text(json.dumps(json.loads(CANONICAL.read_text())[:5]))
    return path


@pytest.fixture
def source(pg18: Server) -> Iterator[Target]:
    """A seeded database labelled staging: what a release is cut from."""
    with database(pg18, "movelib_template") as name:
        target = target_from_dsn(pg18.dsn(name), "--dsn")
        migrate(target, MIGRATIONS, environment="staging")
        seed(target)
        yield target


def test_a_seed_records_its_data_file_and_an_unchanged_seed_records_nothing(migrated_db: Target) -> None:
    seed(migrated_db)
    run = rows(migrated_db, "SELECT id FROM movement_seed_run")
    assert rows(migrated_db, PROVENANCE) == [
        ("seed", "data/movements-canonical.json", CANONICAL_SHA, None, None, None, None, None, None,
         run_by(), run[0][0])]
    seed(migrated_db)  # nothing written: no seed run, no provenance row
    assert len(rows(migrated_db, PROVENANCE)) == 1


def test_a_restore_records_the_artifact_and_keeps_the_targets_history(source: Target, migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db, older(tmp_path))
    result = dump(source, MIGRATIONS, tmp_path, release="v1.2", update_latest=False)
    restored = restore(plan_restore(migrated_db, result.path))
    history = rows(migrated_db, PROVENANCE)
    assert [h[0] for h in history] == ["seed", "restore"]
    assert history[0][-1] is not None, "a merge keeps the target's seed runs: the old row still names its run"
    server = rows(source, "SHOW server_version")[0][0].split()[0]
    # unsigned: the manifest's "release" field proves nothing, so neither it nor a tag is recorded
    assert history[1] == ("restore", "data/movements-canonical.json", CANONICAL_SHA, result.path.name,
                          result.manifest.sha256, None, None, "staging", server, run_by(),
                          None)
    assert restored.provenance is not None
    assert restored.provenance.describe().startswith(
        f"holds unsigned dump {result.path.name} (artifact {result.manifest.sha256[:12]}..., from "
        f"staging, PostgreSQL {server}; restored ")
    # the table is the database's: a dump neither carries nor drops it
    assert "movement_provenance" not in result.manifest.row_counts
    assert "COPY \"movement_provenance\"" not in result.path.read_text()


def test_a_dump_from_before_migration_0003_restores_and_is_brought_up_to_date(pg18: Server, migrated_db: Target, tmp_path: Path) -> None:
    """A dump of migrations 0001-0002 (as movelib wrote them before 0003) is accepted byte for
    byte; the restore applies 0003 after it, in its transaction, and records itself."""
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("0001.movement-library.sql", "0002.movement-versions.sql"):
        shutil.copyfile(MIGRATIONS / name, folder / name)
    with database(pg18) as name:
        old = target_from_dsn(pg18.dsn(name), "--dsn")
        migrate(old, folder)
        seed(old, skip_migrations=True)  # no provenance table to record into: nothing recorded
        two = dump(old, folder, tmp_path / "dumps", update_latest=False)
    assert two.manifest.migrations == ["0001.movement-library", "0002.movement-versions"]
    data = json.loads(two.manifest_path.read_text())
    del data["library_sha256"]  # and its manifest as movelib wrote them before
    two.manifest_path.write_text(json.dumps(data))
    text = two.path.read_text()
    assert "movement_provenance" not in text
    later = tuple(MIGRATION_NAMES[2:])
    with database(pg18) as name:  # into an empty database: loaded, then brought up to date
        empty = target_from_dsn(pg18.dsn(name), "--dsn")
        restored = restore(plan_restore(empty, two.path))
        assert restored.migrated == later and restored.merged is None
        assert [r[0] for r in rows(empty, PROVENANCE)] == ["restore"]
        assert migrate(empty, MIGRATIONS).applied == []  # fully bookkept
        assert rows(empty, "SELECT migration_id FROM _yoyo_migration ORDER BY 1")[-len(later):] == [(m,) for m in later]
    seed(migrated_db, older(tmp_path))  # into a database at this checkout's migrations: merged
    restored = restore(plan_restore(migrated_db, two.path))
    assert restored.migrated == () and restored.merged is not None
    assert [r[0] for r in rows(migrated_db, PROVENANCE)] == ["seed", "restore"]
    assert rows(migrated_db, "SELECT count(*) FROM movement_library")[0][0] == 8


def test_inv_restore_and_verify_print_the_provenance(cli: Cli, source: Target, migrated_db: Target, tmp_path: Path) -> None:
    result = dump(source, MIGRATIONS, tmp_path, update_latest=False)
    restored = cli("restore", "--dump-file", str(result.path), "--dsn", migrated_db.conninfo, "--yes")
    assert restored.code == 0, restored.output
    assert (f"provenance: recorded; the database holds unsigned dump {result.path.name} (artifact "
            f"{result.manifest.sha256[:12]}..., from staging, PostgreSQL") in restored.stdout
    text = cli("verify", "--dsn", migrated_db.conninfo)
    assert text.code == 0, text.output
    assert f"  provenance: holds unsigned dump {result.path.name} (artifact" in text.stdout
    assert f"by {run_by()})" in text.stdout
    as_json = cli("verify", "--dsn", migrated_db.conninfo, "--json")
    provenance = json.loads(as_json.stdout)["provenance"]
    assert provenance["kind"] == "restore" and provenance["artifact_sha256"] == result.manifest.sha256
    assert provenance["source_environment"] == "staging" and provenance["run_by"] == run_by()
    assert provenance["summary"].startswith(f"holds unsigned dump {result.path.name}")
    for run in (restored, text, as_json):
        assert_no_secret(run.output)


def test_verify_says_when_nothing_is_recorded(cli: Cli, migrated_db: Target) -> None:
    result = cli("verify", "--dsn", migrated_db.conninfo, "--json")
    assert result.code == 0, result.output
    assert json.loads(result.stdout)["provenance"] == {"summary": "nothing recorded"}


# -- inv verify --release ---------------------------------------------------------------------


@pytest.fixture
def released(source: Target, tmp_path: Path) -> Path:
    """Release v1.2 of ``source``, as `inv release` lays it out: its manifest file."""
    return dump(source, MIGRATIONS, tmp_path / "releases" / "v1.2", release="v1.2",
                update_latest=False).manifest_path


def test_verify_release_passes_on_a_restore_of_it_and_fails_with_what_differs(cli: Cli, migrated_db: Target, released: Path, tmp_path: Path) -> None:
    restore(plan_restore(migrated_db, released.with_name(released.name.replace(".manifest.json", ".sql"))))
    ok = cli("verify", "--dsn", migrated_db.conninfo, "--release", str(released))
    assert ok.code == 0, ok.output
    assert "  release v1.2: row counts match (movement_library, movement_current)" in ok.stdout
    assert ("  release v1.2: not compared (the database's own history): each version's published_by, published_at "
            "and ids; the drafts, the audit rows (actors, times) and seed runs") in ok.stdout
    assert "  release v1.2: library content matches (sha256 " in ok.stdout

    seed(migrated_db, older(tmp_path), retire=True)  # three movements retired
    bad = cli("verify", "--dsn", migrated_db.conninfo, "--release", str(released), "--json")
    assert bad.code == 1
    report = json.loads(bad.stdout)
    assert report["release"]["ok"] is False
    assert any("the library's content differs from the release's" in p for p in report["problems"])
    assert "release v1.2: movement_current has 5 rows, the release 8" in report["problems"]
    assert "release v1.2: movement_current has 5 rows, the release 8" in report["problems"]


def test_verify_release_finds_the_release_by_version(migrated_db: Target, released: Path) -> None:
    from movelib.seed.verify import verify
    from movelib.ship.release_check import comparison, release_manifest

    version, manifest, _ = release_manifest(released.parents[2], "v1.2")
    assert (version, manifest.release) == ("v1.2", "v1.2")
    report = verify(migrated_db, schema_file=ROOT / "schemas" / "movement.schema.json",
                    release=comparison(version, manifest))
    assert not report.ok  # an empty library is not the release
    assert "release v1.2: movement_library has 0 rows, the release 8" in report.problems


def test_a_library_with_the_same_counts_but_other_content_fails_the_release(cli: Cli, pg18: Server, released: Path, tmp_path: Path) -> None:
    """Counts are not enough: one movement's content changed, every count the same."""
    data = json.loads(CANONICAL.read_text())
    data[0]["name"] = data[0]["name"] + " (edited)"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    with database(pg18, "movelib_template") as name:
        other = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(other, edited)
        result = cli("verify", "--dsn", other.conninfo, "--release", str(released))
    assert result.code == 1
    assert "row counts match" in result.stdout
    assert "problem: release v1.2: the library's content differs from the release's" in result.stdout


def test_verify_release_without_library_sha256_compares_counts_and_says_so(cli: Cli, migrated_db: Target, released: Path) -> None:
    restore(plan_restore(migrated_db, released.with_name(released.name.replace(".manifest.json", ".sql"))))
    data = json.loads(released.read_text())
    del data["library_sha256"]  # as movelib wrote manifests before the field
    released.write_text(json.dumps(data))
    result = cli("verify", "--dsn", migrated_db.conninfo, "--release", str(released))
    assert result.code == 0, result.output
    assert "content not compared (its manifest, written by movelib" in result.stdout


def test_verify_release_refuses_an_unknown_release(cli: Cli, migrated_db: Target) -> None:
    result = cli("verify", "--dsn", migrated_db.conninfo, "--release", "v9.9")
    assert result.code == 2  # not there: the question could not be asked
    assert "release v9.9: no manifest in" in result.stderr and "Traceback" not in result.output
    assert "target:" not in result.output  # refused before any connection


# -- inv db.status ----------------------------------------------------------------------------


def test_db_status_says_what_each_running_emulator_holds(cli: Cli, cli_overrides: dict[str, str]) -> None:
    try:
        assert cli("db.up").code == 0
        empty = cli("db.status")
        assert empty.code == 0, empty.output
        assert "provenance:\n  local: no movelib schema" in empty.stdout
        assert "staging:" not in empty.stdout.split("provenance:")[1]  # not running: not asked
        assert cli("seed").code == 0
        seeded = cli("db.status")
        assert (f"  local: seeded from data/movements-canonical.json (sha256 {CANONICAL_SHA[:12]}...; "
                in seeded.stdout), seeded.stdout
        assert_no_secret(seeded.output)
        before = table_hashes(target_from_dsn(
            f"postgresql://athlete:athlete@127.0.0.1:{cli_overrides['INVOKE_PROFILES_LOCAL_PORT']}"
            "/athlete_planning", "test"))
        assert before["movement_library"].startswith("8:")
    finally:
        cli("db.down", "--purge")


def test_the_library_hash_is_the_same_on_postgresql_15(released: Path, pg15: Server) -> None:
    """A release cut on PostgreSQL 18 verifies on 15: the hash is computed the same way there."""
    from movelib.seed.verify import verify
    from movelib.ship.release_check import comparison, release_manifest

    with database(pg15) as name:
        target = target_from_dsn(pg15.dsn(name), "--dsn")
        restore(plan_restore(target, released.with_name(released.name.replace(".manifest.json", ".sql"))))
        report = verify(target, schema_file=ROOT / "schemas" / "movement.schema.json",
                        release=comparison(*release_manifest(ROOT, str(released))))
    assert report.ok, report.problems
    assert any("library content matches" in line for line in report.release_matches)


# -- what provenance proves --------------------------------------------------------------------


def _restore_release(repo: Path, target: Target, manifest: Path, allowed: Path) -> str:
    """`inv restore` of a release under ``repo``, trusting ``allowed``: what provenance says."""
    from movelib.database.settings import Settings
    from movelib.ship.restore import run_restore
    from movelib.ship.restore_plan import RestoreOptions

    settings = Settings.from_mapping({"paths": {"allowed_signers": str(allowed)}}, repo)
    settings = dataclasses.replace(settings, migrations_dir=MIGRATIONS, schema_file=SETTINGS_SCHEMA)
    lines: list[str] = []
    dump_file = dump_for(manifest)  # a release ships its .sql.gz
    result = run_restore(settings, target, RestoreOptions(dump_file=dump_file, assume_yes=True,
                                                          require_signature=True),
                         lines.append, lambda _question: None)
    assert result is not None and result.provenance is not None
    return result.provenance.describe()


SETTINGS_SCHEMA = ROOT / "schemas" / "movement.schema.json"


def test_a_verified_release_is_recorded_with_its_signer_and_only_a_tag_that_points_at_it(
        ssh_keygen: None, release_repo: Path, source: Target, migrated_db: Target, pg18: Server,
        tmp_path: Path) -> None:
    from support import SIGNER, allowed_signers, make_key, public

    from movelib.ship.release import release

    key = make_key(tmp_path / "keys")
    allowed = allowed_signers(tmp_path / "keys", f"{SIGNER} {public(key)}")
    cut = release(source, release_repo, MIGRATIONS, "v1.2", tag=True, sign_key=key)
    manifest = cut.dump.manifest_path
    fingerprint = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    said = _restore_release(release_repo, migrated_db, manifest, allowed)
    assert said.startswith(f"holds release v1.2, signed by {SIGNER} (ED25519 {fingerprint}) (tag v1.2-seed, ")
    assert rows(migrated_db, "SELECT release, tag, signed_by FROM movement_provenance "
                             "ORDER BY id DESC LIMIT 1") == [("v1.2", "v1.2-seed", SIGNER)]
    report = cli_verify_release(migrated_db, manifest)
    assert f"release v1.2, signed by {SIGNER} (ED25519 {fingerprint}): this database restored it" in report
    assert rows(migrated_db, "SELECT manifest_sha256 FROM movement_provenance ORDER BY id DESC LIMIT 1") == [
        (hashlib.sha256(manifest.read_bytes()).hexdigest(),)]

    # v1.2's manifest with other bytes (same release, same artifact, one field edited; and only
    # its layout changed): the signature was verified over other bytes, so nothing is claimed
    for edit in ({"created_at": "2020-01-01T00:00:00+00:00"}, {}):
        edited_copy = tmp_path / "edited" / manifest.name
        edited_copy.parent.mkdir(exist_ok=True)
        edited_copy.write_text(json.dumps({**json.loads(manifest.read_text()), **edit}, indent=1))
        report = cli_verify_release(migrated_db, edited_copy)
        assert f"signed by {SIGNER}" not in report.split("not restored here")[0], report
        assert "release v1.2: not restored here from a verified signature of this manifest" in report

    # a release nobody signed, holding a copy of v1.2's manifest (or v1.2's, its name edited):
    # the signature verified for v1.2 is claimed for no other name
    shutil.copytree(manifest.parent, release_repo / "releases" / "v9.9")
    copied = release_repo / "releases" / "v9.9" / manifest.name
    bad = verify_release(migrated_db, release_repo, "v9.9")
    assert not bad.ok and "release v9.9: the manifest found for it names release v1.2" in bad.problems
    assert not any(line.startswith("release v9.9, signed by") for line in bad.release_matches)
    assert any(line.startswith("release v9.9: not restored here from a verified signature of this manifest")
               for line in bad.release_matches), bad.release_matches
    edited = json.loads(copied.read_text())
    edited["release"] = "v9.9"
    copied.write_text(json.dumps(edited))
    bad = verify_release(migrated_db, release_repo, "v9.9")
    assert "release v9.9: not restored here from a verified signature of this manifest (the database holds release v1.2" \
        in "\n".join(bad.release_matches)

    # the same signed release, where no repository holds its tag: no tag is recorded
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(manifest.parent, elsewhere / "releases" / "v1.2")
    with database(pg18, "movelib_template") as name:
        other = target_from_dsn(pg18.dsn(name), "--dsn")
        copied = elsewhere / "releases" / "v1.2" / manifest.name
        said = _restore_release(elsewhere, other, copied, allowed)
        assert "(tag " not in said and said.startswith(f"holds release v1.2, signed by {SIGNER}")
        assert rows(other, "SELECT tag FROM movement_provenance ORDER BY id DESC LIMIT 1") == [(None,)]

    # a tag of that name pointing at other content proves nothing either
    git(release_repo, "tag", "-d", "v1.2-seed")
    (release_repo / "releases" / "v1.2" / manifest.name).write_text("{}\n")
    git(release_repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "other")
    git(release_repo, "tag", "v1.2-seed")
    with database(pg18, "movelib_template") as name:
        other = target_from_dsn(pg18.dsn(name), "--dsn")
        # the repository has the tag, but at a commit whose manifest is not the restored one
        said = _restore_release(release_repo, other, elsewhere / "releases" / "v1.2" / manifest.name, allowed)
        assert "(tag " not in said and said.startswith(f"holds release v1.2, signed by {SIGNER}")


def verify_release(target: Target, root: Path, release: str) -> VerifyReport:
    from movelib.seed.verify import verify
    from movelib.ship.release_check import comparison, release_manifest

    return verify(target, schema_file=SETTINGS_SCHEMA, release=comparison(*release_manifest(root, release)))


def cli_verify_release(target: Target, manifest: Path) -> str:
    from movelib.seed.verify import verify
    from movelib.ship.release_check import comparison, release_manifest

    report = verify(target, schema_file=SETTINGS_SCHEMA, release=comparison(*release_manifest(ROOT, str(manifest))))
    assert report.ok, report.problems
    return "\n".join(report.release_matches)


def test_verify_release_says_a_library_not_restored_from_a_verified_signature(
        migrated_db: Target, released: Path) -> None:
    restore(plan_restore(migrated_db, released.with_name(released.name.replace(".manifest.json", ".sql"))))
    said = cli_verify_release(migrated_db, released)
    assert "release v1.2: not restored here from a verified signature of this manifest (the database holds " \
           "unsigned dump" in said
