"""Checks before side effects: a task that will refuse its input refuses before it starts an
emulator or connects; a file that cannot be written is one line, and nothing half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT, Cli, InProcessCli, git, make_key, port_open, require, seed

from movelib.database.target import Target


@pytest.fixture
def stopped_staging(cli_overrides: dict[str, str]) -> int:
    """The staging profile's port, with nothing listening there (its emulator never started)."""
    port = int(cli_overrides["INVOKE_PROFILES_STAGING_PORT"])
    assert not port_open(port)
    return port


@pytest.mark.parametrize("argv", [
    pytest.param(["seed", "--profile", "staging", "--file", "nope.json"], id="seed-missing-file"),
    pytest.param(["seed", "--profile", "staging", "--file", "README.md"], id="seed-invalid-file"),
    pytest.param(["verify", "--profile", "staging", "--file", "nope.json"], id="verify-missing-file"),
    pytest.param(["seed", "--profile", "staging", "--format", "yaml", "--dry-run"], id="seed-bad-format"),
    pytest.param(["seed", "--profile", "staging", "--lock-timeout", "soon"], id="seed-bad-lock-timeout"),
    pytest.param(["migrate", "--profile", "staging", "--environment", "prod"], id="migrate-bad-environment"),
    pytest.param(["restore", "--profile", "staging", "--dump-file", "nope.sql", "--yes"], id="restore-missing-dump"),
    pytest.param(["release", "--profile", "staging", "--version", "1.0"], id="release-bad-version"),
])
def test_a_refused_input_leaves_a_stopped_emulator_stopped(cli: Cli, cli_overrides: dict[str, str],
                                                           stopped_staging: int, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code in (1, 2), result.output
    assert "started it" not in result.output and "Traceback" not in result.output
    assert not port_open(stopped_staging), "the staging emulator was started"
    assert not (Path(cli_overrides["INVOKE_EMULATOR_DIR"]) / "staging").exists()


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` on a tmpfs of ``size``, as full as a disk gets once a dump is written."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    require("linux", root and Path("/proc/self").is_dir(), "mounting a small tmpfs needs root on Linux")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 64 KiB tmpfs."""
    with small_tmpfs(tmp_path / "full", "64k") as folder:
        yield folder


def test_a_full_disk_is_one_line_and_nothing_half_written(cli: Cli, full_disk: Path, migrated_db: Target) -> None:
    seed(migrated_db)
    for argv in (["dump", "--dsn", migrated_db.conninfo, "--output-dir", str(full_disk)],
                 ["data.synth", "--count", "5000", "--out", str(full_disk / "synth.json")],
                 ["data.import", "--source-format", "free-exercise-db", "--source",
                  "data/free-exercise-db/exercises.json", "--out", str(full_disk / "imported.json")]):
        result = cli(*argv)
        assert result.code == 2, (argv[0], result.output)
        assert "No space left on device" in result.stderr and "nothing was left half-written" in result.stderr
        assert argv[0] == "dump" or "--output-dir" not in result.stderr, result.stderr  # options it has
        assert "Traceback" not in result.output
        assert list(full_disk.iterdir()) == [], (argv[0], list(full_disk.iterdir()))


PAGE = 4096


@pytest.mark.parametrize("room", ["none", "the-dump-only", "dump-and-manifest"])
def test_a_release_onto_a_full_disk_is_one_line_and_leaves_no_file_commit_or_tag(
        cli_overrides: dict[str, str], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        release_repo: Path, migrated_db: Target, tmp_path: Path, room: str) -> None:
    """`inv release --tag` writes a dump and a manifest into its checkout's releases/ (and, with
    --sign, a signature) and tags them: when the disk fills at any of these files it says so in
    one line (exit 2), and no file, commit or tag is left."""
    from movelib.ship.dump import dump

    seed(migrated_db)
    probe = dump(migrated_db, release_repo / "migrations", tmp_path / "probe", update_latest=False)
    pages = -(-probe.path.stat().st_size // PAGE) + (0 if room == "the-dump-only" else 1)
    size = "8k" if room == "none" else str(pages * PAGE)
    argv = ["release", "--version", "v1.0", "--tag", "--dsn", migrated_db.conninfo]
    if room == "dump-and-manifest":
        argv += ["--sign", str(make_key(tmp_path / "keys"))]
    shutil.copy(ROOT / "tasks.py", release_repo / "tasks.py")  # the checkout the task writes into
    git(release_repo, "add", "tasks.py")
    git(release_repo, "commit", "-qm", "tasks")
    head = git(release_repo, "rev-parse", "HEAD")
    cli = InProcessCli(cli_overrides, capfd, monkeypatch, root=release_repo)
    with small_tmpfs(release_repo / "releases", size) as releases:
        result = cli(*argv)
        assert result.code == 2, result.output
        errors = result.stderr.strip().splitlines()
        assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr
        assert "nothing was left half-written" in errors[0] and "Traceback" not in result.output
        assert "--output-dir" not in errors[0]  # an option release does not have
        assert [p for p in releases.rglob("*") if not p.is_dir()] == []
    assert git(release_repo, "tag") == "" and git(release_repo, "rev-parse", "HEAD") == head
    assert git(release_repo, "status", "--porcelain") == ""


def test_two_dumps_in_one_second_both_land(migrated_db: Target, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from movelib.ship.dump import dump

    seed(migrated_db)
    now = datetime(2026, 12, 1, 1, 2, 3, tzinfo=UTC)
    first = dump(migrated_db, Path("migrations"), tmp_path, now=now, update_latest=False)
    second = dump(migrated_db, Path("migrations"), tmp_path, now=now, update_latest=False)
    assert (first.path.name, second.path.name) == ("movements_seed_20261201_010203.sql",
                                                   "movements_seed_20261201_010203_2.sql")
    assert second.manifest.dump_file == second.path.name
