"""How a movelib task runs under invoke: the flag letters (one per meaning, from
``movelib_cli.options.SHORT_FLAGS``), printing with every known password masked, expected
failures as one line and an exit code, and the target a task touches, printed first, with its
profile's emulator started when the task is ready to connect.

Beside ``movelib_cli.program`` (the ``inv`` command) and outside the ``movelib`` package, which never
imports invoke; ``tasks.py`` composes the tasks with these. Imports of movelib's heavier modules
happen inside the functions, so that ``inv --list`` stays instant.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from invoke.exceptions import Exit
from invoke.tasks import Task
from invoke.tasks import task as invoke_task

from movelib.base.errors import EXIT_CODES
from movelib_cli.options import SHORT_FLAGS

if TYPE_CHECKING:
    from pathlib import Path

    from movelib.database.guard import Permission
    from movelib.database.settings import Settings
    from movelib.database.target import Target
    from movelib.ship.restore_plan import RestoreOptions


class FlagTask(Task[Any]):
    """A task whose short flags come from one table (``options.SHORT_FLAGS``), the same letter
    for the same meaning in every task, instead of invoke's first free letter of each name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `inv --help TASK` shows the docstring: the exit-code contract with it (the first line
        # stays what `inv --list` shows)
        self.__doc__ = f"{(self.__doc__ or '').rstrip()}\n\n{EXIT_CODES}."

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        self.auto_shortflags = False
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name)
        if short is not None and short not in taken_names:
            opts["names"].append(short)
        return opts


task = functools.partial(invoke_task, klass=FlagTask)


def say(*lines: str, err: bool = False) -> None:
    """Print lines (to stderr with ``err``) with every known password masked and every control
    character but line breaks and tabs escaped (:func:`movelib.base.text.terminal_safe`): the
    one door to the terminal, so no path can forget it. When the reader
    has gone (``inv seed | head -1``), the rest of the output is dropped and the task still
    finishes its work."""
    from movelib.base.console import drop_output, utf8_output
    from movelib.base.progress import end_live_line
    from movelib.base.secrets import redact
    from movelib.base.text import terminal_safe

    end_live_line()
    stream = sys.stderr if err else sys.stdout
    utf8_output(stream)  # a redirected plan is UTF-8, also where the locale says cp1252
    try:
        for line in lines or ("",):
            print(terminal_safe(redact(line)), flush=True, file=stream)
    except OSError as exc:
        drop_output(stream, exc)


@contextmanager
def user_errors(task: str = "the task") -> Iterator[None]:
    """Expected failures become a message and exit code, never a traceback; Ctrl-C becomes one
    line and exit code 130."""
    from movelib.base.errors import INTERRUPTED, MovelibError
    from movelib.base.progress import end_live_line
    from movelib.base.secrets import redact
    from movelib.base.text import terminal_safe

    try:
        yield
    except MovelibError as exc:
        end_live_line()  # the message starts on a line of its own
        # a server's message, DETAIL and CONTEXT quote what the rows hold: escaped, as all output
        raise Exit(terminal_safe(redact(str(exc))), code=exc.exit_code) from None
    except KeyboardInterrupt:
        end_live_line()
        raise Exit(f"interrupted: {task} stopped (Ctrl-C); the transaction in progress, if any, "
                   "was rolled back; what it reported as committed before it stays",
                   code=INTERRUPTED) from None


def target_for(settings: Settings, dsn: str | None, profile: str | None, err: bool = False,
            start: bool = True) -> Target:
    """Every task that touches a database: resolve the target, print it first (on stderr when
    stdout is a document), and start a profile's stopped emulator (a DSN's, never); with
    ``start=False`` the task starts it itself once its inputs are checked (:func:`starter`)."""
    target = settings.target(dsn=dsn, profile=profile)
    say(f"target: {target.describe()}", err=err)
    if start:
        starter(settings, target, err)()
    return target


def starter(settings: Settings, target: Target, err: bool = False) -> Any:
    """What starts ``target``'s stopped profile emulator, for a task to call before it
    connects and after it has checked everything it can check without a connection."""
    from movelib.database.emulator import start_if_stopped

    return lambda: start_if_stopped(target, settings.emulator_for, lambda line: say(line, err=err))


# -- what every task reads before it runs -------------------------------------------------------


def _plain(value: Any) -> Any:
    if hasattr(value, "keys"):
        return {k: _plain(value[k]) for k in value.keys()}  # noqa: SIM118 - DataProxy
    return value


def settings_from(config: Any, root: Path) -> Settings:
    """The project's settings from invoke's configuration (defaults, invoke.yaml, INVOKE_*)."""
    from movelib.base.defaults import DEFAULTS
    from movelib.database.settings import Settings

    return Settings.from_mapping({key: _plain(config[key]) for key in DEFAULTS if key in config},
                                 root)


def writing(settings: Settings, lock_timeout: float | None, allow_protected: bool,
            confirm: str | None) -> tuple[float, Permission]:
    """The options of every task that writes to a target, parsed once, before anything runs:
    the lock timeout in seconds, and the permission a production-labelled target asks for."""
    from movelib.database.guard import Permission
    from movelib_cli.options import seconds

    return seconds(lock_timeout, settings.lock_timeout), Permission(allow_protected, confirm)


def restore_options(settings: Settings, dump_file: str | Path, yes: bool, lock_timeout: float | None,
                    allow_protected: bool, confirm: str | None, allow_downgrade: bool,
                    dry_run: bool, require_signature: bool = False) -> RestoreOptions:
    """``inv restore``'s (and ``inv promote``'s: the release's dump) options as the package
    takes them."""
    from pathlib import Path

    from movelib.base.prompt import has_terminal
    from movelib.ship.restore_plan import RestoreOptions

    timeout, permission = writing(settings, lock_timeout, allow_protected, confirm)
    return RestoreOptions(Path(dump_file).absolute(), assume_yes=yes, lock_timeout=timeout,
                          permission=permission, require_signature=require_signature,
                          allow_downgrade=allow_downgrade, dry_run=dry_run,
                          terminal=has_terminal())
