"""Production trusts only what it pinned: signers held by the database, a threshold of distinct
signers, no silent rollback, and a preview before anything is replaced.

Real ssh-keygen keys and signatures, real databases; each restore through `inv` in process."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from support import (
    CANONICAL,
    ROOT,
    Cli,
    Server,
    allowed_signers,
    database,
    dsn_as,
    make_key,
    owned_database,
    port_open,
    public,
    role,
    rows,
    seed,
    table_hashes,
)

from movelib.base.errors import ReleaseError
from movelib.database.guard import Permission
from movelib.database.migrations import migrate
from movelib.database.target import Target, target_from_dsn
from movelib.ship.dump import dump
from movelib.ship.manifest import manifest_path
from movelib.ship.quorum import next_signature_path, signature_files
from movelib.ship.release import cosign
from movelib.ship.rollback import version_key
from movelib.ship.signing import sign_file

MIGRATIONS = ROOT / "migrations"


@dataclass(frozen=True)
class Keys:
    a: Path
    b: Path
    c: Path  # a second key of a's principal


@dataclass(frozen=True)
class Releases:
    older: Path  # v1.9
    newer: Path  # v1.10: newer as a version, older as text
    keys: Keys


@pytest.fixture(scope="module")
def releases(ssh_keygen: None, pg18: Server, tmp_path_factory: pytest.TempPathFactory) -> Releases:
    base = tmp_path_factory.mktemp("trust")
    keys = Keys(make_key(base / "keys", "a"), make_key(base / "keys", "b"), make_key(base / "keys", "c"))
    with database(pg18, "movelib_template") as name:
        source = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(source)
        older = dump(source, MIGRATIONS, base / "v1.9", release="v1.9", update_latest=False).path
        newer = dump(source, MIGRATIONS, base / "v1.10", release="v1.10", update_latest=False).path
    return Releases(older, newer, keys)


def copy_release(dump_file: Path, folder: Path) -> Path:
    """The dump and its manifest in a folder of their own, unsigned."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in (dump_file, manifest_path(dump_file)):
        shutil.copyfile(source, folder / source.name)
    return folder / dump_file.name


def signed(dump_file: Path, folder: Path, *keys: Path) -> Path:
    """A copy of the release with one signature per key, in .sig, .sig.2, ..."""
    copy = copy_release(dump_file, folder)
    manifest = manifest_path(copy)
    for key in keys:
        sign_file(manifest, key, out=next_signature_path(manifest))
    return copy


def labelled(server: Server, label: str) -> Iterator[Target]:
    with database(server, "movelib_template") as name:
        target = target_from_dsn(server.dsn(name), "--dsn")
        migrate(target, MIGRATIONS, environment=label)
        yield target


@pytest.fixture
def production(pg18: Server) -> Iterator[Target]:
    yield from labelled(pg18, "production")


@pytest.fixture
def staging(pg18: Server) -> Iterator[Target]:
    yield from labelled(pg18, "staging")


def protected(target: Target) -> list[str]:
    return ["--dsn", target.conninfo, "--allow-protected", "--confirm", target.dbname]


def pin(cli: Cli, target: Target, key: Path, principal: str) -> None:
    result = cli("trust.pin", f"{key}.pub", "--principal", principal, *protected(target))
    assert result.code == 0, result.output


def restore(cli: Cli, target: Target, dump_file: Path, *extra: str, trusted: Path | None = None):  # type: ignore[no-untyped-def]
    env = {"INVOKE_PATHS_ALLOWED_SIGNERS": str(trusted)} if trusted else {}
    return cli("restore", "--dump-file", str(dump_file), "--yes", *protected(target), *extra, env=env)


# -- the trust tasks --------------------------------------------------------------------------


def test_trust_changes_are_protected_writes_and_logged(cli: Cli, production: Target, releases: Releases) -> None:
    refused = cli("trust.pin", f"{releases.keys.a}.pub", "--principal", "a@example.com", "--dsn", production.conninfo)
    assert refused.code == 1 and "refusing to pin a signer" in refused.stderr, refused.output
    pin(cli, production, releases.keys.a, "a@example.com")
    pin(cli, production, releases.keys.b, "b@example.com")
    fingerprint = subprocess.run(["ssh-keygen", "-lf", f"{releases.keys.a}.pub"], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    again = cli("trust.pin", f"{releases.keys.a}.pub", "--principal", "x@example.com", *protected(production))
    assert again.code == 2 and "already pinned" in again.stderr
    private = cli("trust.pin", str(releases.keys.a), "--principal", "a@example.com", *protected(production))
    assert private.code == 2 and "is a private key" in private.stderr
    assert cli("trust.threshold", "2", *protected(production)).code == 0
    listed = cli("trust.list", "--dsn", production.conninfo)
    assert listed.code == 0, listed.output
    assert f"trust: 2 signers pinned in {production.dbname}, threshold 2" in listed.stdout
    assert fingerprint in listed.stdout and "a@example.com" in listed.stdout
    unpinned = cli("trust.unpin", fingerprint, *protected(production))
    assert unpinned.code == 0, unpinned.output
    assert "the threshold 2 is more than the 1 distinct principal(s) pinned" in unpinned.stdout
    log = rows(production, "SELECT change, principal, fingerprint, threshold, changed_by FROM movement_trust_log ORDER BY id")
    assert [(c, p, t) for c, p, _f, t, _b in log] == [
        ("pin", "a@example.com", None), ("pin", "b@example.com", None), ("threshold", None, 2),
        ("unpin", "a@example.com", None)]
    assert log[0][2] == log[3][2] == fingerprint and all("@" in who for *_x, who in log)
    with psycopg.connect(production.conninfo) as conn, pytest.raises(psycopg.errors.RestrictViolation):
        conn.execute("DELETE FROM movement_trust_log")
    with psycopg.connect(production.conninfo) as conn, pytest.raises(psycopg.errors.RestrictViolation):
        conn.execute("TRUNCATE movement_trust_signer")


def test_a_dump_neither_carries_nor_drops_the_trust(cli: Cli, production: Target, releases: Releases, tmp_path: Path) -> None:
    pin(cli, production, releases.keys.a, "a@example.com")
    copy = signed(releases.newer, tmp_path / "r", releases.keys.a)
    assert restore(cli, production, copy).code == 0
    assert rows(production, "SELECT principal FROM movement_trust_signer") == [("a@example.com",)]
    out = tmp_path / "out"
    assert cli("dump", "--dsn", production.conninfo, "--output-dir", str(out)).code == 0
    assert b"a@example.com" not in (out / "movements_seed_latest.sql").read_bytes()


# -- pinned, never the environment's -----------------------------------------------------------


def test_production_trusts_its_pinned_signers_and_never_a_file_the_environment_names(
        cli: Cli, production: Target, releases: Releases, tmp_path: Path) -> None:
    keys = releases.keys
    pin(cli, production, keys.a, "a@example.com")
    by_b = signed(releases.newer, tmp_path / "b", keys.b)
    names_b = allowed_signers(tmp_path, f"b@example.com {public(keys.b)}")  # the environment trusts b
    before = table_hashes(production)
    refused = restore(cli, production, by_b, trusted=names_b)
    assert refused.code == 1, refused.output
    assert "not pinned in" in refused.stderr and "needs 1" in refused.stderr
    assert f"trust: 1 signer pinned in {production.dbname}, threshold 1" in refused.stdout  # the source, named
    assert table_hashes(production) == before
    by_a = signed(releases.newer, tmp_path / "a", keys.a)
    accepted = restore(cli, production, by_a, trusted=tmp_path / "nobody")  # the file trusts nobody
    assert accepted.code == 0, accepted.output
    assert f"trust: 1 signer pinned in {production.dbname}, threshold 1" in accepted.stdout
    assert "signature: good, by a@example.com (ED25519 " in accepted.stdout
    assert f"pinned in {production.dbname}" in accepted.stdout
    assert "holds release v1.10, signed by a@example.com" in accepted.stdout


def test_a_production_database_with_nothing_pinned_refuses_every_restore(cli: Cli, production: Target, releases: Releases, tmp_path: Path) -> None:
    copy = signed(releases.newer, tmp_path / "r", releases.keys.a)
    trusted = allowed_signers(tmp_path, f"a@example.com {public(releases.keys.a)}")
    before = table_hashes(production)
    result = restore(cli, production, copy, trusted=trusted)
    assert result.code == 1, result.output
    assert f"nothing is pinned in {production.dbname}" in result.stderr
    assert "inv trust.pin KEY.pub --principal NAME" in result.stderr
    assert table_hashes(production) == before


def test_a_staging_database_still_reads_the_allowed_signers_file(cli: Cli, staging: Target, releases: Releases, tmp_path: Path) -> None:
    copy = signed(releases.newer, tmp_path / "r", releases.keys.a)
    trusted = allowed_signers(tmp_path, f"a@example.com {public(releases.keys.a)}")
    result = cli("restore", "--dump-file", str(copy), "--dsn", staging.conninfo, "--yes",
                 env={"INVOKE_PATHS_ALLOWED_SIGNERS": str(trusted)})
    assert result.code == 0, result.output
    assert f"trust: the allowed_signers file {trusted}" in result.stdout
    assert "signature: good, by a@example.com (ED25519 " in result.stdout and f"from {trusted}" in result.stdout
    # a second signature by a key the file does not name: noted beside the good one, not a refusal
    both = signed(releases.newer, tmp_path / "both", releases.keys.a, releases.keys.b)
    noted = cli("restore", "--dump-file", str(both), "--dsn", staging.conninfo, "--yes",
                env={"INVOKE_PATHS_ALLOWED_SIGNERS": str(trusted)})
    assert noted.code == 0, noted.output
    note = next(line for line in noted.stdout.splitlines() if line.startswith("signature: not counted: "))
    assert "refusing" not in note and ".sig.2" in noted.stdout, note


# -- the threshold ----------------------------------------------------------------------------

THRESHOLDS = [
    pytest.param(1, "a", 0, id="threshold-1-one-signer-accepted"),
    pytest.param(2, "a", 1, id="threshold-2-one-signer-refused"),
    pytest.param(2, "aa", 1, id="threshold-2-one-key-twice-counts-once"),
    pytest.param(2, "ac", 1, id="threshold-2-one-principal-with-two-keys-counts-once"),
    pytest.param(2, "ab", 0, id="threshold-2-two-signers-accepted"),
    pytest.param(2, "abc", 0, id="threshold-2-three-signatures-two-principals-accepted"),
]


@pytest.mark.parametrize(("threshold", "signers", "code"), THRESHOLDS)
def test_the_threshold_counts_distinct_pinned_signers(cli: Cli, production: Target, releases: Releases, tmp_path: Path,
                                                      threshold: int, signers: str, code: int) -> None:
    keys = releases.keys
    pin(cli, production, keys.a, "a@example.com")
    pin(cli, production, keys.b, "b@example.com")
    pin(cli, production, keys.c, "a@example.com")  # a's second key: still one principal
    assert cli("trust.threshold", str(threshold), *protected(production)).code == 0
    copy = signed(releases.newer, tmp_path / "r", *(getattr(keys, k) for k in signers))
    assert len([p for p in signature_files(manifest_path(copy)) if p.exists()]) == len(signers)
    before = table_hashes(production)
    result = restore(cli, production, copy)
    assert result.code == code, result.output
    if code:
        distinct = len(set(signers.replace("c", "a")))
        assert f"signed by {distinct} distinct pinned signer(s)" in result.stderr
        assert f"needs {threshold} (trust: 3 signers pinned in {production.dbname}, threshold {threshold})" in result.stderr
        assert table_hashes(production) == before
    else:
        assert f"trust: 3 signers pinned in {production.dbname}, threshold {threshold}" in result.stdout
        recorded = rows(production, "SELECT signed_by FROM movement_provenance ORDER BY id DESC LIMIT 1")
        principals = {"a": "a@example.com", "b": "b@example.com", "c": "a@example.com"}
        assert recorded == [(", ".join(sorted({principals[k] for k in signers})),)]


def test_cosign_adds_a_standard_signature_that_ssh_keygen_verifies(releases: Releases, tmp_path: Path) -> None:
    root = tmp_path / "project"
    copy = signed(releases.newer, root / "releases" / "v1.10", releases.keys.a)
    with pytest.raises(ReleaseError, match=r"already signed release v1\.10"):
        cosign(root, "v1.10", releases.keys.a)
    added = cosign(root, "v1.10", releases.keys.b)
    manifest = manifest_path(copy)
    assert added.signed.path == manifest.with_name(manifest.name + ".sig.2")
    assert len(added.keys) == 2
    trusted = allowed_signers(tmp_path, f"b@example.com {public(releases.keys.b)}")
    with manifest.open("rb") as message:
        check = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(trusted), "-I", "b@example.com",
                                "-n", "movelib-release", "-s", str(added.signed.path)],
                               stdin=message, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


# -- no silent rollback -----------------------------------------------------------------------


@pytest.mark.parametrize(("older", "newer"), [
    ("v1.9", "v1.10"), ("v1.2", "v1.2.1"), ("v2.0-rc2", "v2.0-rc10"), ("v2.0-rc10", "v2.0"),
    ("v0.9.9", "v1"),
], ids=lambda v: v)
def test_versions_are_ordered_as_versions_not_as_text(older: str, newer: str) -> None:
    assert version_key(older) < version_key(newer)
    assert version_key("v1.2") == version_key("v1.2.0") == version_key("v1.2+build.7")


def test_an_older_release_is_refused_naming_both_and_allowed_with_the_flag(cli: Cli, staging: Target, releases: Releases, tmp_path: Path) -> None:
    trusted = allowed_signers(tmp_path, f"a@example.com {public(releases.keys.a)}")
    env = {"INVOKE_PATHS_ALLOWED_SIGNERS": str(trusted)}
    newer = signed(releases.newer, tmp_path / "new", releases.keys.a)
    older = signed(releases.older, tmp_path / "old", releases.keys.a)
    args = ["--dsn", staging.conninfo, "--yes"]
    assert cli("restore", "--dump-file", str(newer), *args, env=env).code == 0
    before = table_hashes(staging)
    refused = cli("restore", "--dump-file", str(older), *args, env=env)
    assert refused.code == 1, refused.output
    assert "release v1.9 is older than release v1.10 (signed by a@example.com)" in refused.stderr
    assert "--allow-downgrade" in refused.stderr
    assert table_hashes(staging) == before
    allowed = cli("restore", "--dump-file", str(older), *args, "--allow-downgrade", env=env)
    assert allowed.code == 0, allowed.output
    assert "downgrade: allowed (--allow-downgrade): release v1.9 is older than release v1.10" in allowed.stdout
    assert "holds release v1.9" in allowed.stdout


def test_another_spelling_of_the_held_version_is_another_artifact_of_it(cli: Cli, pg18: Server, staging: Target, releases: Releases, tmp_path: Path) -> None:
    """v1.10.0 is v1.10: a signed artifact spelled so does not replace the v1.10 held."""
    trusted = allowed_signers(tmp_path, f"a@example.com {public(releases.keys.a)}")
    env = {"INVOKE_PATHS_ALLOWED_SIGNERS": str(trusted)}
    args = ["--dsn", staging.conninfo, "--yes"]
    assert cli("restore", "--dump-file", str(signed(releases.newer, tmp_path / "new", releases.keys.a)), *args, env=env).code == 0
    five = tmp_path / "five.json"
    five.write_text(json.dumps(json.loads(CANONICAL.read_text())[:5]))
    with database(pg18, "movelib_template") as name:  # another artifact, with other content
        other = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(other, five)
        made = dump(other, MIGRATIONS, tmp_path / "made", release="v1.10.0", update_latest=False).path
    spelled = signed(made, tmp_path / "spelled", releases.keys.a)
    refused = cli("restore", "--dump-file", str(spelled), *args, env=env)
    assert refused.code == 1, refused.output
    assert "release v1.10.0 here is another artifact" in refused.stderr and "than the release v1.10" in refused.stderr


def test_an_unsigned_dump_over_a_signed_release_is_a_downgrade(cli: Cli, production: Target, releases: Releases, tmp_path: Path) -> None:
    pin(cli, production, releases.keys.a, "a@example.com")
    assert restore(cli, production, signed(releases.older, tmp_path / "old", releases.keys.a)).code == 0
    newer_unsigned = copy_release(releases.newer, tmp_path / "unsigned")
    staging_like = tmp_path / "nobody"
    before = table_hashes(production)
    refused = restore(cli, production, newer_unsigned, trusted=staging_like)
    assert refused.code == 1 and "is unsigned" in refused.stderr, refused.output  # production: unsigned never
    assert table_hashes(production) == before
    with psycopg.connect(production.conninfo, autocommit=True) as conn:
        conn.execute("UPDATE movement_environment SET label = 'staging'")
    before = table_hashes(production)
    refused = cli("restore", "--dump-file", str(newer_unsigned), "--dsn", production.conninfo, "--yes")
    assert refused.code == 1, refused.output
    assert "the unsigned release v1.10" in refused.stderr and "would replace release v1.9 (signed by a@example.com)" in refused.stderr
    assert table_hashes(production) == before


# -- the preview ------------------------------------------------------------------------------


def test_the_preview_names_a_changed_and_a_removed_movement_and_a_dry_run_writes_nothing(
        cli: Cli, pg18: Server, staging: Target, tmp_path: Path) -> None:
    movements = json.loads(CANONICAL.read_text())
    first_seven = tmp_path / "seven.json"
    first_seven.write_text(json.dumps(movements[:7]))
    with database(pg18, "movelib_template") as name:
        source = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(source, first_seven)
        dump_file = dump(source, MIGRATIONS, tmp_path / "d", update_latest=False).path
    seed(staging)  # all eight; then the first movement changes to v2
    edited = [dict(movements[0], name=movements[0]["name"] + " (edited)"), *movements[1:]]
    changed_file = tmp_path / "changed.json"
    changed_file.write_text(json.dumps(edited))
    seed(staging, changed_file, new_versions=True)
    before = table_hashes(staging)
    result = cli("restore", "--dump-file", str(dump_file), "--dsn", staging.conninfo, "--dry-run")
    assert result.code == 0, result.output
    first, last = movements[0]["slug"], movements[7]["slug"]
    assert "preview: 0 added, 1 removed, 1 changed, 0 new versions, 0 conflict" in result.stdout
    assert f"removed: {last} (v1 -> absent)" in result.stdout
    assert f"changed: {first} (v2 -> v1)" in result.stdout
    assert "replaces: a library seeded from " in result.stdout
    assert "dry run: the restore would be allowed; nothing was written" in result.stdout
    assert table_hashes(staging) == before
    lines = result.stdout.splitlines()
    assert lines.index(next(x for x in lines if x.startswith("preview:"))) < lines.index(
        next(x for x in lines if x.startswith("dry run:")))


def test_a_dry_run_that_would_be_refused_shows_the_preview_and_exits_1(cli: Cli, production: Target, releases: Releases, tmp_path: Path) -> None:
    copy = signed(releases.newer, tmp_path / "r", releases.keys.a)
    result = cli("restore", "--dump-file", str(copy), *protected(production), "--dry-run")
    assert result.code == 1, result.output
    assert "preview: 8 added" in result.stdout
    assert "dry run: the restore would be refused" in result.stdout
    assert "nothing is pinned" in result.stderr


def test_without_a_terminal_or_yes_restore_refuses_before_it_starts_a_stopped_emulator(
        cli: Cli, cli_overrides: dict[str, str], releases: Releases) -> None:
    port = int(cli_overrides["INVOKE_PROFILES_STAGING_PORT"])
    try:
        assert cli("db.up", "--profile", "staging").code == 0
        assert cli("db.down", "--profile", "staging").code == 0
        assert not port_open(port)
        result = cli("restore", "--dump-file", str(releases.newer), "--profile", "staging")
        assert result.code == 1, result.output
        assert "no terminal to ask for confirmation on; pass --yes" in result.stderr
        assert "emulator:" not in result.output and not port_open(port)
        assert "dump:" not in result.stdout  # refused before the dump is even read
    finally:
        cli("db.down", "--profile", "staging", "--purge")


# -- the database's owner cannot bend the trust silently ---------------------------------------


@pytest.fixture
def owned_production(pg18: Server) -> Iterator[Target]:
    """A production-labelled database whose owner (no superuser) made every table, as a managed
    service's application role does: it may disable the triggers on its own tables."""
    with role(pg18) as owner:
        target = target_from_dsn(dsn_as(pg18, owner, owned_database(pg18, owner)), "--dsn")
        migrate(target, MIGRATIONS, environment="production")
        yield target


def owner_writes(target: Target, *statements: str) -> None:
    """What the owner runs in psql, in one transaction."""
    with psycopg.connect(target.conninfo) as conn:
        for statement in statements:
            conn.execute(statement)


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_the_trust_log_is_a_chain_that_every_change_extends(cli: Cli, production: Target, releases: Releases, tmp_path: Path) -> None:
    pin(cli, production, releases.keys.a, "a@example.com")
    # a change made with psql, in a session whose time zone and date style differ, is logged and
    # chained too: the entry's hash does not depend on how the session shows time
    with psycopg.connect(production.conninfo) as conn:
        conn.execute("SET TimeZone = 'Asia/Kathmandu'")
        conn.execute("SET DateStyle = 'SQL, DMY'")
        conn.execute("INSERT INTO movement_trust_signer (principal, public_key, pinned_by) "
                     f"VALUES ('b@example.com', {sql_literal(public(releases.keys.b))}, 'dba')")
    assert cli("trust.threshold", "2", *protected(production)).code == 0
    listed = cli("trust.list", "--dsn", production.conninfo)
    assert listed.code == 0, listed.output
    chain = rows(production, "SELECT prev_hash, entry_hash FROM movement_trust_log ORDER BY id")
    assert [prev for prev, _ in chain] == ["", chain[0][1], chain[1][1]]
    assert f"log: 3 changes, hash-chained, head {chain[2][1][:16]}" in listed.stdout
    copy = signed(releases.newer, tmp_path / "r", releases.keys.a, releases.keys.b)
    restored = restore(cli, production, copy)
    assert restored.code == 0, restored.output


def test_entries_written_before_the_chain_are_chained_by_its_migration(
        cli: Cli, pg18: Server, releases: Releases, tmp_path: Path) -> None:
    for path in sorted(MIGRATIONS.glob("000[1-7]*.sql")):
        shutil.copyfile(path, tmp_path / path.name)
    with database(pg18) as name:
        target = target_from_dsn(pg18.dsn(name), "--dsn")
        migrate(target, tmp_path, environment="production")
        with psycopg.connect(target.conninfo) as conn:
            conn.execute("INSERT INTO movement_trust_signer (principal, public_key, pinned_by) "
                         f"VALUES ('a@example.com', {sql_literal(public(releases.keys.a))}, 'dba')")
            conn.execute("INSERT INTO movement_trust_threshold (threshold, set_by) VALUES (1, 'dba')")
        applied = migrate(target, MIGRATIONS, permission=Permission(True, name)).applied
        assert applied == ["0008.movement-trust-chain"]
        listed = cli("trust.list", "--dsn", target.conninfo)
        assert listed.code == 0 and "log: 2 changes, hash-chained" in listed.stdout, listed.output


# What a database's owner (no superuser) can do with psql to the trust behind movelib's triggers,
# and what every task that uses the trust then says. {a} is key a's public key, {b} key b's.
BEHIND = "ALTER TABLE {table} DISABLE TRIGGER USER"
AGAIN = "ALTER TABLE {table} ENABLE TRIGGER USER"
ATTACKS = {
    "a signer inserted": (
        [BEHIND.format(table="movement_trust_signer"),
         "INSERT INTO movement_trust_signer (principal, public_key, pinned_by) "
         "VALUES ('a@example.com', {b}, 'alice')", AGAIN.format(table="movement_trust_signer")],
        "is pinned but the log never pinned it"),
    "the log emptied": (
        [BEHIND.format(table="movement_trust_log"), "DELETE FROM movement_trust_log",
         AGAIN.format(table="movement_trust_log")],
        "is pinned but the log never pinned it"),
    "an entry edited": (
        [BEHIND.format(table="movement_trust_log"),
         "UPDATE movement_trust_log SET changed_by = 'someone else' WHERE change = 'pin'",
         AGAIN.format(table="movement_trust_log")],
        "is not what its hash says: it was edited"),
    "the first entry deleted": (
        [BEHIND.format(table="movement_trust_log"),
         "DELETE FROM movement_trust_log WHERE id = (SELECT min(id) FROM movement_trust_log)",
         AGAIN.format(table="movement_trust_log")],
        "is not the log's first: the entries before it were deleted"),
    "a signer removed": (
        [BEHIND.format(table="movement_trust_signer"),
         "DELETE FROM movement_trust_signer WHERE principal = 'c@example.com'",
         AGAIN.format(table="movement_trust_signer")],
        "is pinned by the log but not in the table"),
    "the threshold lowered": (
        [BEHIND.format(table="movement_trust_threshold"),
         "UPDATE movement_trust_threshold SET threshold = 1",
         AGAIN.format(table="movement_trust_threshold")],
        "the threshold is 1 but the log says 2"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_what_the_owner_changes_behind_the_triggers_is_refused_by_every_task_that_uses_the_trust(
        cli: Cli, owned_production: Target, releases: Releases, tmp_path: Path, attack: str) -> None:
    statements, problem = ATTACKS[attack]
    target, keys = owned_production, releases.keys
    pin(cli, target, keys.a, "a@example.com")
    pin(cli, target, keys.c, "c@example.com")
    assert cli("trust.threshold", "2", *protected(target)).code == 0
    before = cli("trust.list", "--dsn", target.conninfo)
    assert before.code == 0 and "problem" not in before.stdout, before.output
    with pytest.raises(psycopg.errors.RestrictViolation):  # the guard holds until disabled
        owner_writes(target, "DELETE FROM movement_trust_log")
    owner_writes(target, *(s.format(a=sql_literal(public(keys.a)), b=sql_literal(public(keys.b)))
                           for s in statements))
    listed = cli("trust.list", "--dsn", target.conninfo)
    assert listed.code == 1, listed.output
    assert "DOES NOT MATCH THE TRUST" in listed.stdout and problem in listed.stdout, listed.output
    # the release the attacker wanted (signed by the keys the table holds now) is refused, and so
    # is a release the real signers signed: the trust as it stands is not trusted at all
    pinned_now = [row[0] for row in rows(target, "SELECT principal FROM movement_trust_signer")]
    by = [keys.b] if attack == "a signer inserted" else [keys.a, keys.c]
    copy = signed(releases.newer, tmp_path / "r", *by)
    before_tables = table_hashes(target)
    refused = restore(cli, target, copy)
    assert refused.code == 1, (pinned_now, refused.output)
    assert "does not match its log" in refused.stderr and problem in refused.stderr
    assert "changed behind movelib's triggers" in refused.stderr
    assert table_hashes(target) == before_tables
    dry = cli("restore", "--dump-file", str(copy), *protected(target), "--dry-run")
    assert dry.code == 1 and "does not match its log" in dry.stderr, dry.output


RESTORER_GRANTS = [  # SECURITY.md's recipe for a role that restores but cannot change the trust
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {restorer}",
    "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON movement_trust_signer, movement_trust_threshold, "
    "movement_trust_log, movement_environment FROM {restorer}",
]


def test_a_restore_role_that_is_not_the_owner_restores_and_cannot_change_the_trust(
        cli: Cli, pg18: Server, owned_production: Target, releases: Releases, tmp_path: Path) -> None:
    target, keys = owned_production, releases.keys
    pin(cli, target, keys.a, "a@example.com")
    with role(pg18) as restorer:
        owner_writes(target, *(g.format(restorer=restorer) for g in RESTORER_GRANTS))
        as_restorer = target_from_dsn(dsn_as(pg18, restorer, target.dbname), "--dsn")
        restored = restore(cli, as_restorer, signed(releases.newer, tmp_path / "r", keys.a))
        assert restored.code == 0, restored.output
        assert "holds release v1.10, signed by a@example.com" in restored.stdout
        trust_before = rows(target, "SELECT * FROM movement_trust_signer")
        refused = cli("trust.pin", f"{keys.b}.pub", "--principal", "a@example.com", *protected(as_restorer))
        assert refused.code != 0 and "permission denied" in refused.stderr, refused.output
        for statement in ["ALTER TABLE movement_trust_signer DISABLE TRIGGER USER",
                          "INSERT INTO movement_trust_signer (principal, public_key, pinned_by) "
                          f"VALUES ('a@example.com', {sql_literal(public(keys.b))}, 'x')",
                          "UPDATE movement_environment SET label = 'staging'"]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                owner_writes(as_restorer, statement)
        assert rows(target, "SELECT * FROM movement_trust_signer") == trust_before
        assert cli("trust.list", "--dsn", as_restorer.conninfo).code == 0
        with psycopg.connect(pg18.dsn(target.dbname)) as conn:  # its grants, before it is dropped
            conn.execute(f'DROP OWNED BY "{restorer}"')


def test_a_signature_the_file_refuses_stops_before_a_stopped_emulator_starts(
        cli: Cli, cli_overrides: dict[str, str], releases: Releases, tmp_path: Path) -> None:
    """The allowed_signers file decides for a staging or local database: a signer it does not
    name (or a signature over other bytes) is refused before the emulator is started."""
    port = int(cli_overrides["INVOKE_PROFILES_STAGING_PORT"])
    trusted = allowed_signers(tmp_path, f"a@example.com {public(releases.keys.a)}")
    by_b = signed(releases.newer, tmp_path / "b", releases.keys.b)
    other = signed(releases.newer, tmp_path / "other", releases.keys.a)
    manifest_path(other).write_bytes(manifest_path(other).read_bytes() + b" ")  # the signature no longer matches
    try:
        assert cli("db.up", "--profile", "staging").code == 0
        assert cli("db.down", "--profile", "staging").code == 0
        for dump_file, says in ((by_b, "not in"), (other, "does not match the manifest")):
            result = cli("restore", "--dump-file", str(dump_file), "--profile", "staging", "--yes",
                         env={"INVOKE_PATHS_ALLOWED_SIGNERS": str(trusted)})
            assert result.code == 1, result.output
            assert says in result.stderr and "emulator:" not in result.output, result.output
            assert not port_open(port)
        assert "checked before starting" in result.stderr or "does not match" in result.stderr
    finally:
        cli("db.down", "--profile", "staging", "--purge")
