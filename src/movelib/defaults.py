"""Defaults of every setting, importable without loading the rest of the package."""

from __future__ import annotations

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

# Defaults of every setting; tasks.py hands them to invoke (``ns.configure``), so each can be
# overridden in invoke.yaml or the environment (``INVOKE_EMULATOR_BIN_DIR=...``).
DEFAULTS: dict[str, Any] = {
    "profiles": DEFAULT_PROFILES,
    "emulator": {
        "backend": "auto",
        "dir": ".emulators",
        "bin_dir": "",
        "system_user": "movelib",
        "server_settings": {},
        "image": "postgres:18",  # docker backend: the official image of the embedded major
        "project": "movelib",  # docker backend: container movelib-<profile>, volume ...-data
    },
    "paths": {
        "data_file": "data/movements-canonical.json",
        "schema_file": "schemas/movement.schema.json",
        "migrations_dir": "migrations",
        "dotenv": ".env",
    },
    "lock_timeout": 30.0,
}
