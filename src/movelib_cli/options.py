"""Task options as people type them: their help texts (said once, from the defaults) and the
parsing of values invoke hands over as text, with a one-line error for a bad one.

Importing this module costs nothing beyond the defaults: ``inv --list`` and ``--help`` load it.
"""

from __future__ import annotations

import math

from movelib.base.defaults import (
    DATA_FILE,
    DEFAULT_PROFILES,
    DOCKER_IMAGE,
    DUMP_DIR,
    LOCK_TIMEOUT,
    LOG_LINES,
    SYNTH_SEED,
)
from movelib.base.errors import ConfigError

_PORTS = " or ".join(f"{name} ({p['port']})" for name, p in DEFAULT_PROFILES.items())

# Which database a task touches, in the order movelib.database.target decides it (README says it in
# these words; a test keeps them in step).
TARGET_ORDER = ("--dsn; else --profile; else PLANNING_DATABASE_URL from the environment; else "
                "PLANNING_DATABASE_URL from .env; else the local profile")
PROFILE_HELP = f"emulator profile: {_PORTS} by default (INVOKE_PROFILES_*); default local"
TARGET_HELP = {
    "dsn": ("the target: a PostgreSQL URL (password percent-encoded), service=NAME (a libpq "
            "service file) or env:NAME (the URL in that environment variable: no password in "
            f"argv). Order: {TARGET_ORDER}"),
    "profile": PROFILE_HELP,
}
LOCK_HELP = (f"seconds to wait for another run holding the target's lock (default "
             f"{LOCK_TIMEOUT:g}, setting lock_timeout)")
PROTECT_HELP = {
    "allow_protected": "allow writing to a production-labelled target (needs the name confirmed)",
    "confirm": "the target database's name, confirming a production write without a prompt (CI)",
}
BACKEND_HELP = ("auto (default): the backend db.up last used for the profile; else the one "
                "holding its data; else docker if an engine answers and has the image; else "
                "embedded. Or embedded, or docker")
IMAGE_HELP = f"docker backend: the PostgreSQL image (default {DOCKER_IMAGE})"
SYNTH_SEED_HELP = f"random seed (default {SYNTH_SEED}; the same seed gives the same file)"
DUMP_DIR_HELP = f"where to write the dump (default {DUMP_DIR})"
LOG_LINES_HELP = f"how many of the last log lines to show (default {LOG_LINES})"


# The options of the main tasks, by task.
MIGRATE_HELP = {
    **TARGET_HELP,
    "environment": "label the database local, staging or production (set once, on purpose)",
    "lock_timeout": LOCK_HELP,
    **PROTECT_HELP,
}
VALIDATE_HELP = {"file": f"data file to check (default {DATA_FILE})",
                 "quiet": "no progress output"}
SEED_HELP = {
    **TARGET_HELP,
    "file": f"data file to seed (default {DATA_FILE})",
    "skip_migrations": "do not apply migrations first (the schema must be there)",
    "lock_timeout": LOCK_HELP,
    "environment": "label the database local, staging or production while migrating",
    "new_versions": "publish changed movements as version n+1 instead of failing",
    "retire": "retire current movements that are missing from the data file (audited)",
    "dry_run": "show the plan per movement (with field diffs) and write nothing; exit 1 when "
               "the seed would be refused (blocked changes)",
    "format": "with --dry-run: the plan as text (default), json, or markdown (for a pull "
              "request's job summary)",
    "json": "with --dry-run: the same as --format json",
    "quiet": "no progress output (results and errors are still printed)",
    **PROTECT_HELP,
}
VERIFY_HELP = {
    **TARGET_HELP,
    "file": "also check that the library matches this data file",
    "json": "print the report as JSON",
    "release": "also check the database against a release: a version (its manifest in "
               "releases/<version>/) or a .manifest.json file; row counts and the library's "
               "content (library_sha256)",
}
SIDE_HELP = "a profile name (local, staging...) or a PostgreSQL URL (password masked in output)"
DIFF_HELP = {
    "from_": f"the first library: {SIDE_HELP}",
    "to": f"the second library: {SIDE_HELP}",
    "json": "print the differences as JSON",
}
RESTORE_HELP = {
    **TARGET_HELP,
    "dump_file": "the .sql dump to apply (its .manifest.json must sit beside it)",
    "yes": "do not ask for confirmation (CI); without it and without a terminal, refuse",
    "lock_timeout": LOCK_HELP,
    **PROTECT_HELP,
    "require_signature": "refuse a dump whose manifest lacks a good signature from an allowed "
                         "signer (always so for a production-labelled target)",
    "allow_downgrade": "replace a newer release (or a signed release with an unsigned dump) on "
                       "purpose; on production with --allow-protected and the name confirmed",
    "dry_run": "check everything and show what the restore would replace, then stop; exit 0 "
               "when it would be allowed, 1 when refused",
}
TRUST_HELP = {**TARGET_HELP, "lock_timeout": LOCK_HELP, **PROTECT_HELP}
PIN_HELP = {
    **TRUST_HELP,
    "keyfile": "the signer's public key file (ssh-keygen's KEY.pub)",
    "principal": "the signer's name, e.g. re@example.com (letters, digits and . _ @ + -)",
}
UNPIN_HELP = {**TRUST_HELP,
              "fingerprint": "the pinned key's SHA256:... fingerprint (`inv trust.list`)"}
THRESHOLD_HELP = {**TRUST_HELP,
                  "number": "how many distinct pinned signers a production restore needs"}
COSIGN_HELP = {
    "version": "the release to cosign (releases/<version>/)",
    "key": "SSH key file (as git's user.signingkey) that adds its signature (<manifest>.sig.N)",
}
PROMOTE_HELP = {
    "version": "the release to promote (releases/<version>/)",
    "from_": f"where the release was verified (it must hold exactly it): {SIDE_HELP}",
    "to": f"the target to restore it into: {SIDE_HELP}",
    "yes": RESTORE_HELP["yes"],
    "lock_timeout": LOCK_HELP,
    **PROTECT_HELP,
    "allow_downgrade": RESTORE_HELP["allow_downgrade"],
    "dry_run": "check everything and show what the promotion would replace, then stop",
}
RELEASE_HELP = {
    **TARGET_HELP,
    "version": "release version, e.g. v1.0 (the dump goes to releases/<version>/)",
    "tag": "commit the release dump and make the annotated tag <version>-seed",
    "sign": "SSH key file (as git's user.signingkey) to sign the manifest (<manifest>.sig, "
            "namespace movelib-release) and, with --tag, the tag",
}


# One short flag per meaning, the same in every task that has the option; every other option is
# long only (invoke would give each the first free letter of its name: -d was --dsn in seed and
# --dump-file in restore, -y --dry-run in seed and --yes in restore). tasks.py applies it.
SHORT_FLAGS = {
    "dsn": "d",
    "profile": "p",
    "file": "f",
    "yes": "y",
    "quiet": "q",
    "out": "o",
    "output_dir": "o",
    "command": "c",  # db.psql, as psql's own -c
}

# What `inv --help` and the README say of exit codes (errors.NO, errors.COULD_NOT_ANSWER).

PLAN_FORMATS = ("text", "json", "markdown")


def plan_format(option: str | None, json_flag: bool, dry_run: bool) -> str:
    """``inv seed``'s output format: ``--format``, with ``--json`` its alias; only a dry run
    has another format than text."""
    wanted = (option or ("json" if json_flag else "text")).strip().lower()
    if wanted not in PLAN_FORMATS:
        raise ConfigError(f"--format takes {', '.join(PLAN_FORMATS)}, not {str(option)[:40]!r}")
    if json_flag and wanted != "json":
        raise ConfigError(f"--json is --format json; it cannot go with --format {wanted}")
    if wanted != "text" and not dry_run:
        raise ConfigError(f"--format {wanted} goes with --dry-run (inv verify --json reports "
                          "a seeded database)")
    return wanted


def seconds(option: str | float | None, default: float, name: str = "--lock-timeout") -> float:
    """A finite, non-negative number of seconds (``None``: the default)."""
    if option is None:
        return default
    try:
        value = float(option)
    except ValueError:
        raise ConfigError(f"{name} takes seconds, not {str(option)[:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} takes a finite number of seconds, 0 or more (not {option})")
    return value


def whole_number(option: str | int | None, default: int, name: str, *, minimum: int = 0) -> int:
    """A whole number of at least ``minimum`` (``None``: the default)."""
    if option is None:
        return default
    try:
        value = int(str(option).strip())
    except ValueError:
        raise ConfigError(f"{name} takes a whole number, not {str(option)[:40]!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value
