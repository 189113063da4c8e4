"""A production-labelled target is never written by accident."""

from __future__ import annotations

import io
from pathlib import Path

import psycopg
import pytest
from support import Cli, Server, signed_release, table_hashes

from movelib.base.errors import ProtectedTarget
from movelib.database.guard import Permission, check_protected
from movelib.database.target import Target, target_from_dsn


@pytest.fixture
def production(cli: Cli, migrated_db: Target) -> Target:
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    labelled = cli("migrate", "--dsn", migrated_db.conninfo, "--environment", "production")
    assert labelled.code == 0 and "environment: labelled production" in labelled.stdout
    return migrated_db


@pytest.fixture
def dump_file(cli: Cli, production: Target, tmp_path: Path) -> Path:
    assert cli("dump", "--dsn", production.conninfo, "--output-dir", str(tmp_path)).code == 0
    return tmp_path / "movements_seed_latest.sql"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["seed"], "refusing to seed: ", id="seed"),
        pytest.param(["seed", "--allow-protected"], "no terminal to type its name on", id="seed-allowed-but-unconfirmed"),
        pytest.param(["seed", "--allow-protected", "--confirm", "not-this-one"], "does not name the target database", id="seed-wrong-name"),
        pytest.param(["seed", "--confirm", "{db}"], "pass --allow-protected", id="seed-confirm-without-allow"),
        pytest.param(["restore", "--dump-file", "{dump}", "--yes"], "refusing to restore: ", id="restore-with-yes-only"),
        pytest.param(["migrate", "--environment", "staging"], "refusing to migrate: ", id="relabel"),
    ],
)
def test_refusals(cli: Cli, production: Target, dump_file: Path, args: list[str], message: str) -> None:
    before = table_hashes(production)
    args = [a.format(db=production.dbname, dump=dump_file) for a in args]
    result = cli(*args, "--dsn", production.conninfo)
    assert result.code == 1, result.output
    assert message in result.stderr
    assert "labelled production" in result.stderr or "does not name" in result.stderr
    assert "Traceback" not in result.output
    assert table_hashes(production) == before


def test_the_allowed_path_works_and_keeps_the_label(cli: Cli, production: Target, dump_file: Path, ssh_keygen: None, tmp_path: Path) -> None:
    ok = ["--allow-protected", "--confirm", production.dbname, "--dsn", production.conninfo]
    assert cli("seed", *ok).code == 0
    restored = cli("restore", "--dump-file", str(dump_file), "--yes", *ok,
                   env=signed_release(dump_file, tmp_path, pinned_in=production))  # signed, pinned there
    assert restored.code == 0, restored.output
    with psycopg.connect(production.conninfo) as conn:
        assert conn.execute("SELECT label FROM movement_environment").fetchone() == ("production",)


def test_a_typed_name_at_the_prompt_is_accepted(production: Target) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    with psycopg.connect(production.conninfo) as conn:
        check_protected(conn, production, Permission(True, None, Tty(production.dbname + "\n"), io.StringIO()), "seed")
        with pytest.raises(ProtectedTarget, match="typed name does not match"):
            check_protected(conn, production, Permission(True, None, Tty("yes\n"), io.StringIO()), "seed")


def test_restore_keeps_the_targets_own_label(cli: Cli, migrated_db: Target, pg18: Server, tmp_path: Path, ssh_keygen: None) -> None:
    """A staging dump restored into production must not relabel production as staging."""
    assert cli("migrate", "--dsn", migrated_db.conninfo, "--environment", "staging").code == 0
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    assert cli("dump", "--dsn", migrated_db.conninfo, "--output-dir", str(tmp_path)).code == 0
    other = pg18.create_database("movelib_template")
    dsn = pg18.dsn(other)
    try:
        assert cli("migrate", "--dsn", dsn, "--environment", "production").code == 0
        dump_file = tmp_path / "movements_seed_latest.sql"
        restored = cli("restore", "--dump-file", str(dump_file), "--dsn", dsn, "--yes",
                       "--allow-protected", "--confirm", other,
                       env=signed_release(dump_file, tmp_path, pinned_in=target_from_dsn(dsn, "--dsn")))
        assert restored.code == 0, restored.output
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT label FROM movement_environment").fetchone() == ("production",)
    finally:
        pg18.drop_database(other)
