"""Stops what a test run started when the run itself is killed (`timeout`, SIGKILL, a closed
terminal): started by conftest.pytest_configure beside the run's controller, it waits for that
process to end, then stops every process whose command line names the run's temp folder (the
PostgreSQL servers of pg18/pg15/tls and the emulators' data folders are in it, PgBouncer's ini
too) and removes the folder. A run that ends normally stops the reaper first.

    python tests/reaper.py OWNER_PID TEMP_FOLDER
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import time

import psutil


def reap(root: str) -> list[int]:
    """Stop the processes whose command line names ``root``: PostgreSQL's postmaster with its
    immediate shutdown (SIGQUIT), anything else with SIGTERM, then SIGKILL what is left."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == psutil.Process().pid:
            continue
        if any(root in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    quit_signal = getattr(signal, "SIGQUIT", signal.SIGTERM)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(quit_signal if "postgres" in proc.name() else signal.SIGTERM)
    _, alive = psutil.wait_procs(found, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return [p.pid for p in found]


def main() -> None:
    owner, root = int(sys.argv[1]), sys.argv[2]
    while psutil.pid_exists(owner) and psutil.Process(owner).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.5)
    reap(root)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
