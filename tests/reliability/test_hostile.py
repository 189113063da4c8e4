"""Hostile input at the edges: each is refused with exit 1 (130 for Ctrl-C), one clear message,
no traceback, nothing written, and never a flood of output or a hang."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support import CANONICAL, ROOT, Cli, process_env, table_hashes

from movelib.database.target import Target
from movelib.source.synth import write_synthetic


def assert_refused(result: object, expected: str, exit_code: int = 1) -> None:
    """One line, no traceback, the contract's code: 1 for a data file refused, 2 for bad usage
    or configuration (the task could not answer)."""
    code, output = result.code, result.output  # type: ignore[attr-defined]
    assert code == exit_code, output
    assert expected in output, output
    assert "Traceback" not in output


def test_a_device_is_not_read(cli: Cli) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    assert_refused(cli("validate", "--file", "/dev/zero"), "is not a regular file", exit_code=2)


@pytest.mark.posix  # FIFOs
def test_a_fifo_is_refused_without_waiting_for_a_writer(cli_process: Cli, tmp_path: Path) -> None:
    if sys.platform == "win32":  # the posix marker already skips it there; this tells mypy
        pytest.skip("POSIX only")
    fifo = tmp_path / "movements.json"
    os.mkfifo(fifo)
    started = time.monotonic()
    # a new process, so that a regression hangs that process (and fails here), not the suite
    assert_refused(cli_process("validate", "--file", str(fifo)), "is not a regular file", exit_code=2)
    assert time.monotonic() - started < 60


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(cli: Cli) -> None:
    result = cli("validate", env={"INVOKE_LIMITS_MAX_BYTES": "1000"})
    assert_refused(result, "bytes is over the limit of 1,000 (setting limits.max_bytes)")


def test_the_detailed_report_never_reads_a_file_over_its_limit(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    write_synthetic(2000, path)
    path.write_bytes(path.read_bytes().rstrip()[:-1] + b",]")  # a syntax error at the very end
    result = cli("validate", "--file", str(path), env={"INVOKE_LIMITS_REPORT_BYTES": "100000"})
    assert_refused(result, "over the 100,000 bytes the detailed report reads whole")
    assert "syntax" in result.output


def test_problems_listed_are_capped_with_a_count_of_the_rest(cli: Cli, tmp_path: Path) -> None:
    records = json.loads(CANONICAL.read_text())
    for record in records:
        record["level"] = "expert"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records))
    result = cli("validate", "--file", str(path), env={"INVOKE_LIMITS_SHOWN_PROBLEMS": "3"})
    assert_refused(result, "... and 5 more")
    assert result.output.count("is not one of") == 3 and "8 problem(s)" in result.output


@pytest.mark.slow
def test_a_fifty_megabyte_slug_is_not_echoed_whole(cli: Cli, tmp_path: Path) -> None:
    records = json.loads(CANONICAL.read_text())
    records[0]["slug"] = "x" * (50 << 20)
    records[1]["k" * (1 << 20)] = 1
    path = tmp_path / "long.json"
    path.write_text(json.dumps(records))
    result = cli("validate", "--file", str(path))
    assert_refused(result, "more characters]")
    assert len(result.output) < 5000


def test_control_characters_in_names_and_values_are_escaped(cli: Cli, tmp_path: Path) -> None:
    records = json.loads(CANONICAL.read_text())
    records[0]["level"] = "\x1b[31mred\x1b[0m"
    path = tmp_path / "bad\x1b[2J.json"
    path.write_text(json.dumps(records))
    result = cli("validate", "--file", str(path))
    assert_refused(result, "\\x1b[2J.json")
    assert "\x1b" not in result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "soon"])
def test_lock_timeout_takes_only_a_finite_number_of_seconds(cli: Cli, migrated_db: Target, value: str) -> None:
    before = table_hashes(migrated_db)
    result = cli("seed", "--dsn", migrated_db.conninfo, "--lock-timeout", value)
    assert_refused(result, "--lock-timeout takes", exit_code=2)
    assert table_hashes(migrated_db) == before


@pytest.mark.parametrize(("args", "expected"), [
    (["data.synth", "--count", "ten", "--out", "x.json"], "--count takes a whole number, not 'ten'"),
    (["data.synth", "--count", "0", "--out", "x.json"], "--count must be at least 1"),
    (["data.synth", "--count", "3", "--out", "x.json", "--seed", "1.5"], "--seed takes a whole number"),
    (["db.logs", "--lines", "many"], "--lines takes a whole number"),
], ids=["count-ten", "count-zero", "seed-fraction", "lines-many"])
def test_numbers_are_checked_with_one_line(cli: Cli, tmp_path: Path, args: list[str], expected: str) -> None:
    assert_refused(cli(*[str(tmp_path / a) if a == "x.json" else a for a in args]), expected, exit_code=2)
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("content", ["PLANNING_DATABASE_URL=postgresql://u:pw@127.0.0.1:1/db\nnot a line\n",
                                     'PLANNING_DATABASE_URL="unterminated\n'],
                         ids=["stray-line", "unterminated-quote"])
def test_a_dotenv_that_cannot_be_parsed_is_an_error(cli: Cli, tmp_path: Path, content: str) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(content)
    result = cli("verify", env={"INVOKE_PATHS_DOTENV": str(dotenv)})
    assert_refused(result, ".env cannot be parsed (line ", exit_code=2)
    assert "target:" not in result.output and "pw" not in result.output


def test_a_malformed_url_in_dotenv_is_an_error(cli: Cli, tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("PLANNING_DATABASE_URL=postgresql://u:p@ss@127.0.0.1:1/db\n")
    assert_refused(cli("verify", env={"INVOKE_PATHS_DOTENV": str(dotenv)}), "cannot be read safely", exit_code=2)


def _default_sigint() -> None:
    """A terminal's shell starts a command with SIGINT at its default, but a suite started in the
    background by a script inherits it ignored (POSIX shells ignore SIGINT for `&` jobs), and an
    ignored signal stays ignored across exec: Python then installs no handler at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.posix  # SIGINT to a process group
def test_ctrl_c_during_a_two_process_validation_is_one_line_and_130(cli_overrides: dict[str, str], tmp_path: Path) -> None:
    """Ctrl-C reaches the whole foreground process group: the task and its forked reader."""
    if sys.platform == "win32":  # the posix marker already skips it there; this tells mypy
        pytest.skip("POSIX only")
    path = tmp_path / "large.json"
    write_synthetic(60_000, path)  # over 16 MB: read by two processes
    run = subprocess.Popen([sys.executable, "-m", "invoke", "validate", "--file", str(path)],
                           cwd=ROOT, env=process_env(cli_overrides), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True,
                           preexec_fn=_default_sigint)
    deadline = time.monotonic() + 60
    while not (children := psutil.Process(run.pid).children()) and time.monotonic() < deadline:
        time.sleep(0.005)  # until the second reader is forked
    assert children and run.poll() is None, "the validation ended before it could be interrupted"
    # Hold the child still, so that the task cannot finish (it waits for the child's half) before
    # Ctrl-C lands, however slow this machine is; it goes on at once, and the signal reaches it too.
    children[0].suspend()
    os.killpg(run.pid, signal.SIGINT)
    with contextlib.suppress(psutil.NoSuchProcess):  # the task may have stopped it already
        children[0].resume()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, out + err
    assert "interrupted: inv validate stopped (Ctrl-C)" in err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err


@pytest.mark.slow  # a process killed; a 60k file
@pytest.mark.posix  # SIGKILL
def test_a_killed_validation_leaves_no_reader_behind(cli_overrides: dict[str, str], tmp_path: Path) -> None:
    """The forked reader of a large file's second half ends when the task is killed (the OOM
    killer, `kill -9`): its result then has no reader, and it must not wait for one for ever,
    holding the terminal's output open."""
    path = tmp_path / "large.json"
    write_synthetic(60_000, path)  # over 16 MB: read by two processes; the child's result
    run = subprocess.Popen([sys.executable, "-m", "invoke", "validate", "--file", str(path)],  # is
                           cwd=ROOT, env=process_env(cli_overrides), stdout=subprocess.DEVNULL,  # far
                           stderr=subprocess.DEVNULL, start_new_session=True)  # over a pipe's 64 KiB
    deadline = time.monotonic() + 60
    while not (children := psutil.Process(run.pid).children()) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert children and run.poll() is None, "the validation ended before it could be killed"
    run.kill()
    run.wait()
    _, alive = psutil.wait_procs(children, timeout=30)
    for child in alive:
        child.kill()
    assert not alive, "the reader outlived the killed task, waiting to hand over its result"


@pytest.mark.posix  # a shell pipe
def test_a_reader_that_goes_away_is_no_traceback(cli_overrides: dict[str, str], migrated_db: Target) -> None:
    """`inv seed | head -1`: the seed still finishes; its output after the first line is dropped."""
    run = subprocess.run(["bash", "-c", '"$0" -m invoke "$@" | head -1', sys.executable, "seed",
                          "--dsn", migrated_db.conninfo], cwd=ROOT, env=process_env(cli_overrides),
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.stdout.startswith("target: ") and run.stdout.count("\n") == 1, run.stdout
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr
    assert table_hashes(migrated_db)["movement_library"].startswith("8:")
