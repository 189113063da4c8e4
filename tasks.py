"""The `inv` namespace: seed, ship and verify the movement library.

This file only composes tasks: each body parses its options and calls a plain function of the
``movelib`` package. Imports happen inside the bodies so that ``inv --list`` stays instant.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit

from movelib.base.progress import ProgressReporter  # how a task shows long steps
from movelib.base.text import as_json, json_blocks, shown_path  # how a task prints values and --json
from movelib_cli.options import (  # help texts and option parsing: nothing heavy
    BACKEND_HELP,
    COSIGN_HELP,
    DIFF_HELP,
    DUMP_DIR_HELP,
    IMAGE_HELP,
    LOG_LINES_HELP,
    MIGRATE_HELP,
    PIN_HELP,
    PROFILE_HELP,
    PROMOTE_HELP,
    RELEASE_HELP,
    RESTORE_HELP,
    SEED_HELP,
    SYNTH_SEED_HELP,
    TARGET_HELP,
    THRESHOLD_HELP,
    UNPIN_HELP,
    VALIDATE_HELP,
    VERIFY_HELP,
    plan_format,
    whole_number,
)
from movelib_cli.running import (  # how a task runs
    restore_options,
    say,
    settings_from,
    starter,
    target_for,
    task,
    user_errors,
    writing,
)

if TYPE_CHECKING:
    from movelib.database.settings import Settings

ROOT = Path(__file__).resolve().parent


def _settings(c: Context) -> Settings:
    return settings_from(c.config, ROOT)


# -- db.* -------------------------------------------------------------------------------------


@task(
    help={
        "profile": PROFILE_HELP,
        "backend": BACKEND_HELP,
        "image": IMAGE_HELP,
    }
)
def up(c: Context, profile: str | None = None, backend: str | None = None,
       image: str | None = None) -> None:
    """Start a profile's PostgreSQL emulator (does nothing if it already runs)."""
    from movelib.database.emulator import remember

    with user_errors("inv db.up"):
        settings = _settings(c)
        emulator = settings.emulator_for(profile, backend, image=image)
        started = emulator.up(echo=say)
        remember(emulator)  # db.status, db.down and auto-starts use this backend from now on
        status = emulator.status()
        verb = "started" if started else "already running"
        say(f"{status.profile} emulator {verb} ({emulator.backend}, PostgreSQL "
            f"{status.server_version}) at {status.dsn}")


@task(
    help={
        "profile": PROFILE_HELP,
        "purge": "also delete the emulator's data",
        "backend": BACKEND_HELP,
    }
)
def down(c: Context, profile: str | None = None, purge: bool = False,
         backend: str | None = None) -> None:
    """Stop a profile's emulator; --purge also deletes its data."""
    from movelib.database.emulator import stop

    with user_errors("inv db.down"):
        settings = _settings(c)
        emulator, was_running = stop(settings.emulator_for(profile, backend), settings.emulator,
                                     auto=(backend or settings.backend) == "auto", purge=purge)
        say(f"{emulator.profile.name} emulator {'stopped' if was_running else 'was not running'} "
            f"({emulator.backend})" + ("; data deleted" if purge else ""))


@task(help={"backend": BACKEND_HELP})
def status(c: Context, backend: str | None = None) -> None:
    """Show every profile's emulator (backend, port, running, version, DSN) and what it holds."""
    from movelib.database.dbstatus import status_lines as held
    from movelib.database.emulator import status_of
    from movelib.database.emulator.base import status_lines

    with user_errors("inv db.status"):
        settings = _settings(c)
        statuses = [status_of(settings.emulator_for(name, backend), settings.emulator)
                    for name in settings.profiles]
        say(*status_lines(statuses), *held(settings, statuses))


@task(
    help={
        "profile": PROFILE_HELP,
        "reveal": "print the password too (for scripts: export X=$(inv db.url --reveal))",
    }
)
def url(c: Context, profile: str | None = None, reveal: bool = False) -> None:
    """Print a profile's DSN (password masked unless --reveal)."""
    from movelib.database.target import mask_conninfo

    with user_errors("inv db.url"):
        dsn = _settings(c).profile(profile).url()
        # the one output that may carry a password, and only when asked to
        print(dsn if reveal else mask_conninfo(dsn))


@task(help={"profile": PROFILE_HELP, "backend": BACKEND_HELP,
            "lines": LOG_LINES_HELP})
def logs(c: Context, profile: str | None = None, lines: str | None = None,
         backend: str | None = None) -> None:
    """Show the last lines of a profile emulator's server log."""
    from movelib.base.defaults import LOG_LINES

    with user_errors("inv db.logs"):
        count = whole_number(lines, LOG_LINES, "--lines", minimum=1)
        text = _settings(c).emulator_for(profile, backend).logs(count)
        say(text or "(no log yet: the emulator has not run)")


@task(help={**TARGET_HELP, "command": "run this SQL and exit instead of an interactive shell"})
def psql(c: Context, profile: str | None = None, dsn: str | None = None,
         command: str | None = None) -> None:
    """Open psql on the target (the password travels in the environment, not argv)."""
    from movelib.database.psql import run_psql

    with user_errors("inv db.psql"):
        settings = _settings(c)
        target = target_for(settings, dsn, profile)
        args = ["-c", command] if command else []
        proc = run_psql(target, settings.emulator.bin_dir, args)
        if proc.returncode:
            raise Exit(code=proc.returncode)


# -- the main job -----------------------------------------------------------------------------


@task(help=MIGRATE_HELP)
def migrate(c: Context, dsn: str | None = None, profile: str | None = None,
            environment: str | None = None, lock_timeout: float | None = None,
            allow_protected: bool = False, confirm: str | None = None) -> None:
    """Apply the SQL migrations in migrations/ (each one atomically)."""
    from movelib.database.migrations import check_environment
    from movelib.database.migrations import migrate as run_migrations

    with user_errors("inv migrate"):
        settings = _settings(c)
        check_environment(environment)
        timeout, permission = writing(settings, lock_timeout, allow_protected, confirm)
        target = target_for(settings, dsn, profile)
        result = run_migrations(target, settings.migrations_dir, environment=environment,
                                lock_timeout=timeout, permission=permission)
        say(*result.lines())


@task(help=VALIDATE_HELP)
def validate(c: Context, file: str | None = None, quiet: bool = False) -> None:
    """Check the data file against schemas/movement.schema.json; lists every error."""
    from movelib.source.datafile import load_movements

    with user_errors("inv validate"):
        settings = _settings(c)
        dataset = load_movements(settings.path(file, settings.data_file), settings.schema_file,
                                 progress=ProgressReporter(quiet=quiet), hashes=False,
                                 limits=settings.file_limits)
        say(f"{dataset.display_name}: {len(dataset)} movements, valid")


@task(help=SEED_HELP)
def seed(c: Context, dsn: str | None = None, profile: str | None = None,
         file: str | None = None, skip_migrations: bool = False,
         lock_timeout: float | None = None, environment: str | None = None,
         new_versions: bool = False, retire: bool = False, dry_run: bool = False,
         format: str | None = None, json: bool = False, quiet: bool = False,
         allow_protected: bool = False, confirm: str | None = None) -> None:
    """Migrate, validate, publish every movement through the audited workflow, verify."""
    from movelib.database.migrations import check_environment
    from movelib.seed.workflow import SeedOptions, run_seed

    with user_errors("inv seed"):
        settings = _settings(c)
        output = plan_format(format, json, dry_run)
        check_environment(environment)
        timeout, permission = writing(settings, lock_timeout, allow_protected, confirm)
        target = target_for(settings, dsn, profile, err=output != "text", start=False)
        options = SeedOptions(
            data_file=settings.path(file, settings.data_file), skip_migrations=skip_migrations,
            lock_timeout=timeout, environment=environment, new_versions=new_versions,
            retire=retire, dry_run=dry_run, output=output, permission=permission)
        run_seed(settings, target, options, echo=say, progress=ProgressReporter(quiet=quiet),
                 before_connect=starter(settings, target, err=output != "text"))


@task(help=VERIFY_HELP)
def verify(c: Context, dsn: str | None = None, profile: str | None = None,
           file: str | None = None, json: bool = False, release: str | None = None) -> None:
    """Check counts, audit chains, provenance, and (--file, --release) the content."""
    from movelib.seed.verify import verify as run_verify
    from movelib.ship.release_check import comparison, release_manifest

    with user_errors("inv verify"):
        settings = _settings(c)
        wanted = comparison(*release_manifest(settings.root, release)) if release else None
        target = target_for(settings, dsn, profile, err=json, start=False)  # --json: stdout is it
        report = run_verify(target, data_file=settings.path(file, settings.data_file) if file
                            else None, schema_file=settings.schema_file,
                            limits=settings.file_limits, release=wanted,
                            before_connect=starter(settings, target, err=json))
        say(*(report.lines() if not json else [as_json(report.as_dict())]))
        report.raise_if_failed()


@task(help=DIFF_HELP)
def diff(c: Context, from_: str = "", to: str = "", json: bool = False) -> None:
    """Compare two libraries movement by movement, read only (exit 1: they differ)."""
    from movelib.seed.diff import diff as compare_libraries
    from movelib.seed.diff import side

    with user_errors("inv diff"):
        settings = _settings(c)
        report = compare_libraries(side(settings, from_, "--from"), side(settings, to, "--to"))
        for block in (json_blocks(report.document()) if json else report.lines()):
            say(block)  # the JSON a block of lines at a time: its differences are not held
        report.raise_if_drift()


# -- artifacts --------------------------------------------------------------------------------


@task(help={**TARGET_HELP, "output_dir": DUMP_DIR_HELP})
def dump(c: Context, dsn: str | None = None, profile: str | None = None,
         output_dir: str | None = None) -> None:
    """Write movements_seed_<UTC time>.sql and its manifest (and the _latest copies)."""
    from movelib.base.defaults import DUMP_DIR
    from movelib.ship.dump import dump as write_dump

    with user_errors("inv dump"):
        settings = _settings(c)
        target = target_for(settings, dsn, profile)
        result = write_dump(target, settings.migrations_dir,
                            settings.path(output_dir, settings.root / DUMP_DIR),
                            bin_dir=settings.emulator.bin_dir)
        say(*result.lines())


@task(help=RESTORE_HELP)
def restore(c: Context, dump_file: str, dsn: str | None = None, profile: str | None = None,
            yes: bool = False, lock_timeout: float | None = None,
            allow_protected: bool = False, confirm: str | None = None,
            require_signature: bool = False, allow_downgrade: bool = False,
            dry_run: bool = False) -> None:
    """Merge a checked dump into the target's movement tables, writing only what differs, all-or-nothing."""
    from movelib.base.prompt import confirm as ask
    from movelib.ship.restore import run_restore

    with user_errors("inv restore"):
        settings = _settings(c)
        options = restore_options(settings, dump_file, yes, lock_timeout, allow_protected,
                                   confirm, allow_downgrade, dry_run, require_signature)
        # run_restore prints the target, checks the dump, then starts a stopped profile emulator
        run_restore(settings, settings.target(dsn=dsn, profile=profile), options, echo=say,
                    ask=lambda question: ask(question, assume_yes=False),
                    progress=ProgressReporter())


@task(help=PROMOTE_HELP)
def promote(c: Context, version: str, from_: str = "", to: str = "", yes: bool = False,
            lock_timeout: float | None = None, allow_protected: bool = False,
            confirm: str | None = None, allow_downgrade: bool = False,
            dry_run: bool = False) -> None:
    """Restore release VERSION into --to once --from holds exactly it (content and provenance)."""
    from movelib.base.prompt import confirm as ask
    from movelib.seed.diff import side
    from movelib.ship.promote import promote as run_promote
    from movelib.ship.promote import release_dump

    with user_errors("inv promote"):
        settings = _settings(c)
        options = restore_options(settings, release_dump(settings.root, version), yes,
                                  lock_timeout, allow_protected, confirm, allow_downgrade, dry_run)
        run_promote(settings, version, side(settings, from_, "--from"),
                    side(settings, to, "--to"), options, echo=say,
                    ask=lambda question: ask(question, assume_yes=False),
                    progress=ProgressReporter())


@task(help=RELEASE_HELP)
def release(c: Context, version: str, dsn: str | None = None, profile: str | None = None,
            tag: bool = False, sign: str | None = None) -> None:
    """Cut a versioned seed dump into releases/<version>/ (optionally signed, committed, tagged)."""
    from movelib.ship.release import check_release
    from movelib.ship.release import release as cut_release

    with user_errors("inv release"):
        settings = _settings(c)
        key = Path(sign).expanduser().absolute() if sign else None
        check_release(settings.root, version, tag=tag, sign_key=key)
        target = target_for(settings, dsn, profile)
        result = cut_release(target, settings.root, settings.migrations_dir, version, tag=tag,
                             sign_key=key, allowed_signers=settings.allowed_signers)
        say(*result.lines(settings.allowed_signers))


@task(help=COSIGN_HELP)
def cosign(c: Context, version: str, key: str) -> None:
    """Add another signer's signature to a release (<manifest>.sig.N, over the same bytes)."""
    from movelib.ship.release import cosign as add_signature

    with user_errors("inv cosign"):
        settings = _settings(c)
        result = add_signature(settings.root, version, Path(key).expanduser().absolute(),
                               settings.allowed_signers)
        say(*result.lines(settings.allowed_signers))


# -- trust.* ----------------------------------------------------------------------------------


@task(name="list", help=TARGET_HELP)
def trust_list(c: Context, dsn: str | None = None, profile: str | None = None) -> None:
    """Show the signers pinned in the target, its threshold and the latest changes."""
    from movelib.ship.trust import list_trust

    with user_errors("inv trust.list"):
        report = list_trust(target_for(_settings(c), dsn, profile))
        say(*report.lines())
        report.raise_if_failed()


@task(help=PIN_HELP)
def pin(c: Context, keyfile: str, principal: str = "", dsn: str | None = None,
        profile: str | None = None, lock_timeout: float | None = None,
        allow_protected: bool = False, confirm: str | None = None) -> None:
    """Pin a signer's public key in the target: its restores into production accept it."""
    from movelib.ship.trust import pin as pin_key

    with user_errors("inv trust.pin"):
        settings = _settings(c)
        timeout, permission = writing(settings, lock_timeout, allow_protected, confirm)
        target = target_for(settings, dsn, profile)
        say(*pin_key(target, Path(keyfile), principal, lock_timeout=timeout,
                     permission=permission).lines())


@task(help=UNPIN_HELP)
def unpin(c: Context, fingerprint: str, dsn: str | None = None, profile: str | None = None,
          lock_timeout: float | None = None, allow_protected: bool = False,
          confirm: str | None = None) -> None:
    """Remove a pinned signer (by its SHA256:... fingerprint) from the target."""
    from movelib.ship.trust import unpin as unpin_key

    with user_errors("inv trust.unpin"):
        settings = _settings(c)
        timeout, permission = writing(settings, lock_timeout, allow_protected, confirm)
        target = target_for(settings, dsn, profile)
        say(*unpin_key(target, fingerprint, lock_timeout=timeout, permission=permission).lines())


@task(help=THRESHOLD_HELP)
def threshold(c: Context, number: str, dsn: str | None = None, profile: str | None = None,
              lock_timeout: float | None = None, allow_protected: bool = False,
              confirm: str | None = None) -> None:
    """Set how many distinct pinned signers a production restore of the target needs."""
    from movelib.ship.trust import set_threshold

    with user_errors("inv trust.threshold"):
        settings = _settings(c)
        count = whole_number(number, 1, "the threshold", minimum=1)
        timeout, permission = writing(settings, lock_timeout, allow_protected, confirm)
        target = target_for(settings, dsn, profile)
        say(*set_threshold(target, count, lock_timeout=timeout, permission=permission).lines())


# -- data files -------------------------------------------------------------------------------


@task(help={"count": "how many movements (at least 1)",
            "out": "file to write (e.g. artifacts/data/synth.json; artifacts/data/ is git-ignored)",
            "seed": SYNTH_SEED_HELP})
def synth(c: Context, count: str = "", out: str = "", seed: str | None = None) -> None:
    """Write a deterministic file of COUNT valid, varied synthetic movements."""
    from movelib.base.defaults import SYNTH_SEED
    from movelib.base.errors import ConfigError
    from movelib.source.synth import write_synthetic

    with user_errors("inv data.synth"):
        if not count or not out:
            raise ConfigError("give --count N (at least 1) and --out FILE")
        number = whole_number(count, 0, "--count", minimum=1)
        write_synthetic(number, Path(out), seed=whole_number(seed, SYNTH_SEED, "--seed"))
        say(f"synth: {number} movements -> {shown_path(out)}")


@task(
    name="import",
    help={
        "source_format": "the catalogue's format; today: free-exercise-db",
        "source": "the catalogue file (free-exercise-db: exercises.json)",
        "out": "movement data file to write",
    },
)
def import_(c: Context, source_format: str, source: str, out: str) -> None:
    """Convert a public exercise catalogue into a movement data file (mapping in the docs)."""
    from movelib.base.errors import ConfigError
    from movelib.source.importers import free_exercise_db

    with user_errors("inv data.import"):
        if source_format != "free-exercise-db":
            raise ConfigError(f"unknown catalogue format {source_format!r}; known: "
                              "free-exercise-db")
        report = free_exercise_db.import_file(Path(source), Path(out))
        say(*report.lines(), f"  written to {shown_path(out)}; check it with `inv validate --file "
            f"{shown_path(out)}`")


db = Collection("db", up, down, status, url, logs, psql)
data = Collection("data", synth, import_)
trust = Collection("trust", trust_list, pin, unpin, threshold)
ns = Collection(db, data, trust, migrate, validate, seed, verify, diff, dump, restore, release,
                cosign, promote)

from movelib.base.defaults import DEFAULTS  # noqa: E402 - a constant, no heavy imports

ns.configure(copy.deepcopy(DEFAULTS))
