"""A sentinel password with @ : / % # never leaks, whatever fails."""

from __future__ import annotations

from pathlib import Path

from conftest import SENTINEL_PASSWORD, Server, assert_no_secret, free_port


def test_no_failure_shows_the_password(cli, pg18: Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert all(c in SENTINEL_PASSWORD for c in "@:/%#")
    db = pg18.create_database()
    good = pg18.dsn(db)
    dumps = tmp_path / "dumps"
    bad_sql = tmp_path / "bad.json"
    runs = {
        "bad host": cli("seed", "--dsn", good.replace("127.0.0.1", "no-such-host.invalid")),
        "bad port": cli("migrate", "--dsn", good.replace(f":{pg18.port}/", f":{free_port()}/")),
        "bad password": cli("migrate", "--dsn", pg18.dsn(db, password=SENTINEL_PASSWORD + "x")),
        "bad database": cli("verify", "--dsn", pg18.dsn("no_such_db")),
        "schema missing (SQL error)": cli("seed", "--dsn", good, "--skip-migrations"),
        "seed": cli("seed", "--dsn", good),
        "child process failure": cli("db.psql", "--dsn", good, "-c", "SELECT no_such_column"),
        "dump": cli("dump", "--dsn", good, "--output-dir", str(dumps)),
        "environment variable": cli("verify", env={"PLANNING_DATABASE_URL": good}),
        "dotenv": cli("verify", env={"INVOKE_PATHS_DOTENV": str(_dotenv(tmp_path, good))}),
    }
    runs["restore"] = cli("restore", "--dump-file", str(dumps / "movements_seed_latest.sql"),
                          "--dsn", good, "--yes")
    bad_sql.write_text("{")
    runs["bad data"] = cli("seed", "--dsn", good, "--file", str(bad_sql))
    assert runs["child process failure"].code != 0 and runs["bad password"].code == 1
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
