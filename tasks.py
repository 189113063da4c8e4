"""The `inv` namespace: seed, ship and verify the movement library.

This file only composes tasks: each body parses its options and calls a plain function of the
``movelib`` package. Imports happen inside the bodies so that ``inv --list`` stays instant.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from movelib.options import (  # help texts and option parsing: nothing heavy
    BACKEND_HELP,
    DIFF_HELP,
    IMAGE_HELP,
    MIGRATE_HELP,
    PROFILE_HELP,
    RELEASE_HELP,
    RESTORE_HELP,
    SEED_HELP,
    SYNTH_SEED_HELP,
    TARGET_HELP,
    VERIFY_HELP,
    plan_format,
    seconds,
    whole_number,
)
from movelib.text import as_json, shown  # how a task prints values and --json

if TYPE_CHECKING:
    from movelib.settings import Settings
    from movelib.target import Target

ROOT = Path(__file__).resolve().parent


def _plain(value: Any) -> Any:
    if hasattr(value, "keys"):
        return {k: _plain(value[k]) for k in value.keys()}  # noqa: SIM118 - DataProxy
    return value


def _settings(c: Context) -> Settings:
    from movelib.defaults import DEFAULTS
    from movelib.settings import Settings

    config = {key: _plain(c.config[key]) for key in DEFAULTS if key in c.config}
    return Settings.from_mapping(config, ROOT)


def say(*lines: str, err: bool = False) -> None:
    """Print lines (to stderr with ``err``) with every known password masked. When the reader
    has gone (``inv seed | head -1``), the rest of the output is dropped and the task still
    finishes its work."""
    from movelib.console import reader_gone, utf8_output
    from movelib.secrets import redact

    stream = sys.stderr if err else sys.stdout
    utf8_output(stream)  # a redirected plan is UTF-8, also where the locale says cp1252
    try:
        for line in lines or ("",):
            print(redact(line), flush=True, file=stream)
    except OSError as exc:
        if not reader_gone(exc):
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())  # and the interpreter's last flush goes there too
        os.close(devnull)


INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


@contextmanager
def user_errors(task: str = "the task") -> Iterator[None]:
    """Expected failures become a message and exit code, never a traceback; Ctrl-C becomes one
    line and exit code 130."""
    from movelib.errors import MovelibError
    from movelib.secrets import redact

    try:
        yield
    except MovelibError as exc:
        raise Exit(redact(str(exc)), code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit(f"interrupted: {task} stopped (Ctrl-C); the transaction in progress, if any, "
                   "was rolled back; steps reported as done before it stay done",
                   code=INTERRUPTED) from None


def _target(settings: Settings, dsn: str | None, profile: str | None, err: bool = False) -> Target:
    """Every task that touches a database: resolve the target, print it first (on stderr when
    stdout is a document), and start a profile's stopped emulator (a DSN's, never)."""
    from movelib.emulator import start_if_stopped

    target = settings.target(dsn=dsn, profile=profile)
    say(f"target: {target.describe()}", err=err)
    start_if_stopped(target, settings.emulator_for, lambda line: say(line, err=err))
    return target


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
    with user_errors("inv db.up"):
        settings = _settings(c)
        emulator = settings.emulator_for(profile, backend, image=image)
        started = emulator.up(echo=say)
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
    with user_errors("inv db.down"):
        emulator = _settings(c).emulator_for(profile, backend)
        was_running = emulator.down(purge=purge)
        name = emulator.profile.name
        say(f"{name} emulator {'stopped' if was_running else 'was not running'}"
            + ("; data deleted" if purge else ""))


@task(help={"backend": BACKEND_HELP})
def status(c: Context, backend: str | None = None) -> None:
    """Show every profile's emulator (backend, port, running, version, DSN) and what it holds."""
    from movelib.emulator.base import status_lines
    from movelib.provenance import status_lines as held

    with user_errors("inv db.status"):
        settings = _settings(c)
        statuses = [settings.emulator_for(name, backend).status() for name in settings.profiles]
        say(*status_lines(statuses), *held(settings, statuses))


@task(
    help={
        "profile": PROFILE_HELP,
        "reveal": "print the password too (for scripts: export X=$(inv db.url --reveal))",
    }
)
def url(c: Context, profile: str | None = None, reveal: bool = False) -> None:
    """Print a profile's DSN (password masked unless --reveal)."""
    from movelib.target import mask_conninfo

    with user_errors("inv db.url"):
        dsn = _settings(c).profile(profile).url()
        # the one output that may carry a password, and only when asked to
        print(dsn if reveal else mask_conninfo(dsn))


@task(help={"profile": PROFILE_HELP, "backend": BACKEND_HELP,
            "lines": "how many of the last log lines to show (default 50)"})
def logs(c: Context, profile: str | None = None, lines: str | None = None,
         backend: str | None = None) -> None:
    """Show the last lines of a profile emulator's server log."""
    with user_errors("inv db.logs"):
        count = whole_number(lines, 50, "--lines", minimum=1)
        text = _settings(c).emulator_for(profile, backend).logs(count)
        say(text or "(no log yet: the emulator has not run)")


@task(help={**TARGET_HELP, "command": "run this SQL and exit instead of an interactive shell"})
def psql(c: Context, profile: str | None = None, dsn: str | None = None,
         command: str | None = None) -> None:
    """Open psql on the target (the password travels in the environment, not argv)."""
    from movelib.psql import run_psql

    with user_errors("inv db.psql"):
        settings = _settings(c)
        target = _target(settings, dsn, profile)
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
    from movelib.guard import Permission
    from movelib.migrations import migrate as run_migrations

    with user_errors("inv migrate"):
        settings = _settings(c)
        target = _target(settings, dsn, profile)
        result = run_migrations(
            target,
            settings.migrations_dir,
            environment=environment,
            lock_timeout=seconds(lock_timeout, settings.lock_timeout),
            permission=Permission(allow_protected, confirm),
        )
        say(*result.lines())


@task(help={"file": "data file to check (default data/movements-canonical.json)",
            "quiet": "no progress output"})
def validate(c: Context, file: str | None = None, quiet: bool = False) -> None:
    """Check the data file against schemas/movement.schema.json; lists every error."""
    from movelib.datafile import load_movements
    from movelib.progress import ProgressReporter

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
    from movelib.guard import Permission
    from movelib.progress import ProgressReporter
    from movelib.workflow import SeedOptions, run_seed

    with user_errors("inv seed"):
        settings = _settings(c)
        output = plan_format(format, json, dry_run)
        target = _target(settings, dsn, profile, err=output != "text")
        options = SeedOptions(
            data_file=settings.path(file, settings.data_file), skip_migrations=skip_migrations,
            lock_timeout=seconds(lock_timeout, settings.lock_timeout), environment=environment,
            new_versions=new_versions, retire=retire, dry_run=dry_run, output=output,
            permission=Permission(allow_protected, confirm))
        run_seed(settings, target, options, echo=say, progress=ProgressReporter(quiet=quiet))


@task(help=VERIFY_HELP)
def verify(c: Context, dsn: str | None = None, profile: str | None = None,
           file: str | None = None, json: bool = False, release: str | None = None) -> None:
    """Check counts, audit chains, provenance, and (--file, --release) the content."""
    from movelib.provenance import release_manifest
    from movelib.verify import verify as run_verify

    with user_errors("inv verify"):
        settings = _settings(c)
        wanted = release_manifest(settings.root, release) if release else None
        target = _target(settings, dsn, profile, err=json)  # with --json, stdout is the document
        report = run_verify(target, data_file=settings.path(file, settings.data_file) if file
                            else None, schema_file=settings.schema_file,
                            limits=settings.file_limits, release=wanted)
        say(*(report.lines() if not json else [as_json(report.as_dict())]))
        report.raise_if_failed()


@task(help=DIFF_HELP)
def diff(c: Context, from_: str = "", to: str = "", json: bool = False) -> None:
    """Compare two libraries movement by movement, read only; exit 1 on drift."""
    from movelib import drift

    with user_errors("inv diff"):
        settings = _settings(c)
        report = drift.diff(drift.side(settings, from_, "--from"), drift.side(settings, to, "--to"))
        say(*(report.lines() if not json else [as_json(report.as_dict())]))
        report.raise_if_drift()


# -- artifacts --------------------------------------------------------------------------------


@task(help={**TARGET_HELP, "output_dir": "where to write the dump (default artifacts/seed-dumps)"})
def dump(c: Context, dsn: str | None = None, profile: str | None = None,
         output_dir: str | None = None) -> None:
    """Write movements_seed_<UTC time>.sql and its manifest (and the _latest copies)."""
    from movelib.dump import dump as write_dump

    with user_errors("inv dump"):
        settings = _settings(c)
        target = _target(settings, dsn, profile)
        result = write_dump(target, settings.migrations_dir,
                            settings.path(output_dir, settings.root / "artifacts" / "seed-dumps"),
                            bin_dir=settings.emulator.bin_dir)
        say(*result.lines())


@task(help=RESTORE_HELP)
def restore(c: Context, dump_file: str, dsn: str | None = None, profile: str | None = None,
            yes: bool = False, lock_timeout: float | None = None,
            allow_protected: bool = False, confirm: str | None = None,
            require_signature: bool = False) -> None:
    """Replace the target's movement library with a checked dump, all-or-nothing."""
    from movelib.guard import Permission
    from movelib.prompt import confirm as ask
    from movelib.restore import RestoreOptions, run_restore

    with user_errors("inv restore"):
        settings = _settings(c)
        options = RestoreOptions(Path(dump_file).absolute(), assume_yes=yes,
                                 lock_timeout=seconds(lock_timeout, settings.lock_timeout),
                                 permission=Permission(allow_protected, confirm),
                                 require_signature=require_signature)
        # run_restore prints the target, checks the dump, then starts a stopped profile emulator
        run_restore(settings, settings.target(dsn=dsn, profile=profile), options, echo=say,
                    ask=lambda question: ask(question, assume_yes=False))


@task(help=RELEASE_HELP)
def release(c: Context, version: str, dsn: str | None = None, profile: str | None = None,
            tag: bool = False, sign: str | None = None) -> None:
    """Cut a versioned seed dump into releases/<version>/ (optionally signed, committed, tagged)."""
    from movelib.release import check_release
    from movelib.release import release as cut_release

    with user_errors("inv release"):
        settings = _settings(c)
        key = Path(sign).expanduser().absolute() if sign else None
        check_release(settings.root, version, tag=tag, sign_key=key)
        target = _target(settings, dsn, profile)
        result = cut_release(target, settings.root, settings.migrations_dir, version, tag=tag,
                             sign_key=key, allowed_signers=settings.allowed_signers)
        say(*result.lines(settings.allowed_signers))


# -- data files -------------------------------------------------------------------------------


@task(help={"count": "how many movements (at least 1)",
            "out": "file to write (e.g. artifacts/data/synth.json; artifacts/data/ is git-ignored)",
            "seed": SYNTH_SEED_HELP})
def synth(c: Context, count: str = "", out: str = "", seed: str | None = None) -> None:
    """Write a deterministic file of COUNT valid, varied synthetic movements."""
    from movelib.defaults import SYNTH_SEED
    from movelib.synth import write_synthetic

    with user_errors("inv data.synth"):
        if not count or not out:
            raise Exit("give --count N (at least 1) and --out FILE", code=1)
        number = whole_number(count, 0, "--count", minimum=1)
        write_synthetic(number, Path(out), seed=whole_number(seed, SYNTH_SEED, "--seed"))
        say(f"synth: {number} movements -> {shown(out)}")


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
    from movelib.importers import free_exercise_db

    with user_errors("inv data.import"):
        if source_format != "free-exercise-db":
            raise Exit(f"unknown catalogue format {source_format!r}; known: free-exercise-db",
                       code=1)
        report = free_exercise_db.import_file(Path(source), Path(out))
        say(*report.lines(), f"  written to {out}; check it with `inv validate --file {out}`")


db = Collection("db", up, down, status, url, logs, psql)
data = Collection("data", synth, import_)
ns = Collection(db, data, migrate, validate, seed, verify, diff, dump, restore, release)

from movelib.defaults import DEFAULTS  # noqa: E402 - a constant, no heavy imports

ns.configure(copy.deepcopy(DEFAULTS))
