"""A test run killed before its teardown (CI's timeout, SIGKILL, a closed terminal) leaves no
PostgreSQL server behind: tests/reaper.py, started beside each run, stops what the run started
once the run is gone. A real process boundary: a pytest run of this suite's fixtures, killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support import ROOT, process_env

pytestmark = pytest.mark.slow  # a whole pytest run, killed: CI runs it

HOLD = '''
import os, pathlib, time

def test_hold(pg18):
    pathlib.Path(os.environ["HOLD_FLAG"]).write_text(str(pg18.emulator.data_dir))
    time.sleep(600)
'''


@pytest.mark.posix  # SIGKILL
def test_a_killed_run_leaves_no_server_behind(tmp_path: Path) -> None:
    (tmp_path / "test_hold.py").write_text(HOLD)
    flag = tmp_path / "flag"
    env = {**process_env({}), "HOLD_FLAG": str(flag), "MOVELIB_TEST_TMP": str(tmp_path / "runs"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])}
    with (tmp_path / "run.log").open("wb") as log:
        run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                                "-p", "no:xdist", "--rootdir", str(tmp_path), str(tmp_path / "test_hold.py")],
                               cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not flag.exists():
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.2)
        data_dir = Path(flag.read_text())
        postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
        assert postmaster.is_running()
    finally:
        run.kill()  # what `timeout -s KILL` or the OOM killer does: no teardown runs
        run.wait()
    gone, _ = psutil.wait_procs([postmaster], timeout=30)
    assert gone, f"the killed run left its server (pid {postmaster.pid}) running"
    deadline = time.monotonic() + 30
    while data_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not data_dir.exists(), "the killed run's temp folder was not removed"
