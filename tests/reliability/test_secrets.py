"""A sentinel password with @ : / % # never leaks, whatever fails."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from support import SENTINEL_PASSWORD, TEST_USER, Cli, Server, assert_no_secret, free_port


@pytest.mark.slow
def test_no_failure_shows_the_password(cli_process: Cli, pg18: Server, tmp_path: Path) -> None:
    assert all(c in SENTINEL_PASSWORD for c in "@:/%#")
    db = pg18.create_database()
    good = pg18.dsn(db)
    dumps = tmp_path / "dumps"
    bad_sql = tmp_path / "bad.json"
    runs = {
        "bad host": cli_process("seed", "--dsn", good.replace("127.0.0.1", "no-such-host.invalid")),
        "bad port": cli_process("migrate", "--dsn", good.replace(f":{pg18.port}/", f":{free_port()}/")),
        "bad password": cli_process("migrate", "--dsn", pg18.dsn(db, password=SENTINEL_PASSWORD + "x")),
        "bad database": cli_process("verify", "--dsn", pg18.dsn("no_such_db")),
        "schema missing (SQL error)": cli_process("seed", "--dsn", good, "--skip-migrations"),
        "seed": cli_process("seed", "--dsn", good),
        "child process failure": cli_process("db.psql", "--dsn", good, "-c", "SELECT no_such_column"),
        "dump": cli_process("dump", "--dsn", good, "--output-dir", str(dumps)),
        "environment variable": cli_process("verify", env={"PLANNING_DATABASE_URL": good}),
        "dotenv": cli_process("verify", env={"INVOKE_PATHS_DOTENV": str(_dotenv(tmp_path, good))}),
        # a URL typed where a path was expected is echoed as the user gave it: only the masking
        # of everything printed (movelib_cli.running.say, user_errors) keeps its password out
        "a URL as the data file": cli_process("validate", "--file", good),
        "a URL as the release": cli_process("verify", "--dsn", good, "--release", good),
    }
    runs["restore"] = cli_process("restore", "--dump-file", str(dumps / "movements_seed_latest.sql"),
                          "--dsn", good, "--yes")
    bad_sql.write_text("{")
    runs["bad data"] = cli_process("seed", "--dsn", good, "--file", str(bad_sql))
    assert runs["child process failure"].code != 0 and runs["bad password"].code == 2
    assert runs["seed"].code == 0 and runs["restore"].code == 0, runs["restore"].output
    for name, result in runs.items():
        assert "Traceback" not in result.output, name
        assert_no_secret(result.output)
    for artifact in dumps.iterdir():
        assert_no_secret(artifact.read_text())
    assert_no_secret(pg18.emulator.logs(100_000))
    pg18.drop_database(db)


def _dotenv(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(f"PLANNING_DATABASE_URL={dsn}\n")
    return path


# Passwords full of what a URL treats specially, with marker letters that no output holds on
# its own: any four characters of a password that carry a marker and show up in an output are a
# leak, whether the password was given raw or percent-encoded.
MARKERS = "QZXJ"
PASSWORDS = st.text(alphabet=MARKERS + "@/#?:%&= +!$'\\\"~;,é", min_size=4, max_size=16).filter(
    lambda p: any(m in p for m in MARKERS))


def _leaks(password: str, output: str) -> list[str]:
    fragments = set()
    for spelling in (password, quote(password, safe=""), quote(password), quote_plus(password)):
        for size in range(4, len(spelling) + 1):
            for start in range(len(spelling) - size + 1):
                piece = spelling[start:start + size]
                if any(m in piece for m in MARKERS):
                    fragments.add(piece)
    return sorted(f for f in fragments if f in output)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@pytest.mark.slow
@given(password=PASSWORDS, encoded=st.booleans())
def test_no_spelling_of_any_password_is_ever_printed(cli: Cli, pg18: Server, password: str, encoded: bool) -> None:
    """Raw and percent-encoded passwords through every way a task can fail: a DSN that cannot be
    parsed (or not safely), a refused connection, a failed login, an SQL error."""
    user = f"u_{abs(hash(password)) % 10**8}"
    with pg18.admin() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(user), sql.Literal(password)))
    secret = quote(password, safe="") if encoded else password

    def dsn(port: int, db: str = "postgres", pw: str = secret) -> str:
        return f"postgresql://{user}:{pw}@127.0.0.1:{port}/{db}"

    runs = [
        cli("verify", "--dsn", dsn(free_port())),                      # refused (or unparsable)
        cli("migrate", "--dsn", dsn(pg18.port, pw=secret + "Q")),      # failed login
        cli("seed", "--dsn", dsn(pg18.port), "--skip-migrations"),     # SQL: no schema
        cli("db.psql", "--dsn", dsn(pg18.port), "-c", "SELECT no_such_column"),  # SQL error
        cli("verify", env={"PLANNING_DATABASE_URL": dsn(free_port())}),
        cli("db.psql", "--dsn", f"host=127.0.0.1 port={pg18.port} user={user} password='{password.replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}' dbname=nosuchdb"),
    ]
    with pg18.admin() as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))
    for result in runs:
        assert result.code != 0, result.output
        assert "Traceback" not in result.output
        assert not _leaks(password, result.output), (password, result.output)


# -- naming a target without a password in argv (docs/servers.md) ----------------------------------


def _descendants(root: int) -> set[int]:
    """Process ``root`` and every process below it, from each process's parent in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat[stat.rindex(")") + 2:].split()[1])  # after "(name) state"
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _argv_holding(secret: str, root: int) -> list[str]:
    """The command lines of process ``root`` and its descendants (the task and what it starts;
    not the other tests' processes running beside it) that hold ``secret``, as `ps` shows any
    user."""
    found = []
    for pid in _descendants(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if secret in argv or quote(secret, safe="") in argv:
            found.append(argv)
    return found


def _watch(env: dict[str, str], *args: str, secret: str = SENTINEL_PASSWORD) -> tuple[int, str, list[str]]:
    """Run `inv ARGS` in a new process, reading the argv of it and its children while it runs."""
    import time

    from support import start_inv

    proc = start_inv(env, *args)
    seen: list[str] = []
    while proc.poll() is None:
        seen += _argv_holding(secret, proc.pid)
        time.sleep(0.02)
    out, err = proc.communicate()
    return proc.returncode, out + err, seen


@pytest.mark.slow
@pytest.mark.posix
def test_following_the_docs_no_password_is_in_any_process_argv(
        cli_overrides: dict[str, str], pg18: Server, tmp_path: Path) -> None:
    """env:NAME, a service file holding the password, and .pgpass: the tasks and the psql they
    start never carry the password in argv, where `ps` shows it to every user of the host."""
    db = pg18.create_database()
    service = tmp_path / "pg_service.conf"
    service.write_text(f"# docs/servers.md\n[movelib_test]\nhost=127.0.0.1\nport={pg18.port}\ndbname={db}\n"
                       f"user={TEST_USER}\npassword={SENTINEL_PASSWORD}\n")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg18.port}:{db}:{TEST_USER}:{SENTINEL_PASSWORD.replace(':', chr(92) + ':')}\n")
    passfile.chmod(0o600)
    base = {**cli_overrides, "PRODUCTION_URL": pg18.dsn(db), "PGSERVICEFILE": str(service), "PGPASSFILE": str(passfile)}
    no_password = f"postgresql://{TEST_USER}@127.0.0.1:{pg18.port}/{db}"
    for how in (["--dsn", "env:PRODUCTION_URL"], ["--dsn", "service=movelib_test"], ["--dsn", no_password]):
        for task in (["seed"], ["verify"], ["db.psql", "-c", "SELECT pg_sleep(0.5)"]):
            code, output, seen = _watch(base, *task, *how)
            assert code == 0, (how, task, output)
            assert not seen, (how, task, seen)
            assert_no_secret(output)
    said = _watch(base, "verify", "--dsn", "env:PRODUCTION_URL")[1]
    assert "(from --dsn env:PRODUCTION_URL)" in said
    said = _watch(base, "verify", "--dsn", "service=movelib_test")[1]
    assert f"127.0.0.1:{pg18.port}/{db}?service=movelib_test (from --dsn)" in said
    # the same run given the password in argv is seen: the watch is real
    assert _watch(base, "db.psql", "--dsn", pg18.dsn(db), "-c", "SELECT pg_sleep(0.5)")[2]
    # and what the task starts is watched too: psql, a child of the task's process
    children = _watch(base, "db.psql", "--dsn", "env:PRODUCTION_URL", "-c", "SELECT pg_sleep(0.5)",
                      secret="SELECT pg_sleep(0.5)")[2]
    assert any(argv.split(" ", 1)[0].endswith("psql") for argv in children), children
