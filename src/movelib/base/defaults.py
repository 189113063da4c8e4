"""Defaults of every setting, importable without loading the rest of the package."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# The ports and credentials of the deployment guide (Method 3 and Scenario 1).
DEFAULT_PROFILES: dict[str, dict[str, Any]] = {
    "local": {
        "host": "127.0.0.1",
        "port": 55432,
        "user": "athlete",
        "password": "athlete",
        "database": "athlete_planning",
    },
    "staging": {
        "host": "127.0.0.1",
        "port": 55433,
        "user": "athlete",
        "password": "athlete_staging",
        "database": "athlete_planning_staging",
    },
}

# Every movelib connection (psycopg's, psql's, the emulators') and every dump speaks UTF-8,
# whatever the server's or database's default: on a SQL_ASCII database psycopg would otherwise
# hand back bytes, not text.
CLIENT_ENCODING = "UTF8"
LOCK_TIMEOUT = 30.0  # seconds a writing task waits for another run's lock on the target
# How long one try of a schema change waits for its table lock. A DDL statement waiting for a
# lock queues every later reader of the table behind it, so it waits this long at most, backs
# out and tries again (until LOCK_TIMEOUT): readers never wait longer than one try.
DDL_LOCK_TRY = 0.15
DOCKER_IMAGE = "postgres:18"  # docker backend: the official image of the embedded major
DOCKER_PROJECT = "movelib"  # docker backend: container movelib-<profile>, volume ...-data
SYSTEM_USER = "movelib"  # the unprivileged user the embedded server runs as under root
SYNTH_SEED = 20261125  # inv data.synth: the same seed gives the same file
RELEASES_DIR = "releases"  # inv release: releases/<version>/ under the project root
DUMP_DIR = "artifacts/seed-dumps"  # inv dump: where a dump goes without --output-dir
LOG_LINES = 50  # inv db.logs: lines shown without --lines
DATA_FILE = "data/movements-canonical.json"  # validate, seed: the data file without --file
SHOWN = 200  # what a report lists of a kind (problems, differences), then "... and N more"



@dataclass(frozen=True)
class FileLimits:
    """How much of a data file the tool reads (setting ``limits``)."""

    max_bytes: int = 4 << 30  # larger files are refused before they are read
    report_bytes: int = 256 << 20  # the detailed report of a bad file parses it whole
    shown_problems: int = SHOWN  # problems listed, then "... and N more"


# Defaults of every setting; tasks.py hands them to invoke (``ns.configure``), so each can be
# overridden in invoke.yaml or the environment (``INVOKE_EMULATOR_BIN_DIR=...``).
DEFAULTS: dict[str, Any] = {
    "profiles": DEFAULT_PROFILES,
    "emulator": {
        "backend": "auto",
        "dir": ".emulators",
        "bin_dir": "",
        "system_user": SYSTEM_USER,
        "server_settings": {},
        "image": DOCKER_IMAGE,
        "project": DOCKER_PROJECT,
    },
    "paths": {
        "data_file": DATA_FILE,
        "schema_file": "schemas/movement.schema.json",
        "migrations_dir": "migrations",
        "dotenv": ".env",
        "allowed_signers": ".movelib/allowed_signers",  # who may sign releases (git's format)
    },
    "lock_timeout": LOCK_TIMEOUT,
    "limits": asdict(FileLimits()),
}
