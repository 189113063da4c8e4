"""The ``inv`` command: invoke's Program with the exit-code contract for what invoke itself
parses, and quiet when the reader of its output goes away.

tasks.py cannot do this: invoke parses its core flags (``-c``, ``--list-depth``, a bare
``--help``) before it loads tasks.py, and exits 1 on a parse error, which the contract keeps for
"no". This module is the one place that sees the Program; the ``movelib`` package below it never
imports invoke.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from invoke import __version__
from invoke.exceptions import Exit, ParseError
from invoke.program import Program

USAGE = 2  # bad usage: "could not answer", as for every task
HINT = "  `inv --list` lists the tasks, `inv --help TASK` a task's options"


class MovelibProgram(Program):
    """Bad usage exits 2 with an invoke-style suggestion, wherever invoke finds it: a core
    flag, a task, a task's flag, ``--help X`` or ``--list X`` naming nothing, no tasks.py."""

    def parse_core(self, argv: Any) -> None:
        with _usage(self, values=True):
            super().parse_core(argv)
        # invoke turns bytecode caching off unless --write-pyc (so that no tasks.pyc lands
        # beside tasks.py): then every `inv` compiled tasks.py and each movelib module it imports
        # that nothing else had compiled (all of them, after a fresh clone), 20 to 60 ms of each
        # everyday command. Caches go to __pycache__ (git-ignored); -B and
        # PYTHONDONTWRITEBYTECODE are still obeyed.
        sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

    def load_collection(self) -> None:
        with _usage(self):
            super().load_collection()

    def parse_tasks(self) -> None:
        with _usage(self, values=True):
            super().parse_tasks()

    def parse_cleanup(self) -> None:
        with _usage(self):
            super().parse_cleanup()

    def print_help(self) -> None:
        """invoke's help, then the exit-code contract (``inv --help TASK`` has it too)."""
        import textwrap

        from movelib.base.options import EXIT_CODES  # help texts only: nothing heavy

        super().print_help()
        print(textwrap.fill(EXIT_CODES[0].upper() + EXIT_CODES[1:] + ".", width=78,
                            initial_indent="  ", subsequent_indent="  ") + "\n")

    def run(self, argv: Any = None, exit: bool = True) -> None:
        try:
            super().run(argv, exit)
        except OSError as exc:  # `inv --list | head -1`: the reader has gone, and so may we
            from movelib.base.console import reader_gone

            if not reader_gone(exc):
                raise
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # and the interpreter's last flush goes there
            os.close(devnull)


@contextmanager
def _usage(program: Program, values: bool = False) -> Iterator[None]:
    """invoke's parse errors, and its exit 1 for a name that is not there, as exit 2; with
    ``values`` also a flag's value of the wrong type (``--list-depth x``), a traceback before."""
    try:
        yield
    except ParseError as exc:
        raise Exit(f"{exc}{suggestion(program, exc)}\n{HINT}", code=USAGE) from None
    except ValueError as exc:
        if not values:
            raise
        raise Exit(f"{exc}\n{HINT}", code=USAGE) from None
    except Exit as exc:
        if exc.code != 1 or not exc.message:
            raise
        raise Exit(exc.message, code=USAGE) from None


def suggestion(program: Program, exc: ParseError) -> str:
    """``; did you mean seed?``: the closest task names, or flags of the task (or of invoke
    itself, before any task) being parsed."""
    found = re.search(r"No idea what '([^']*)' is", str(exc))
    if found is None:
        return ""
    word = found.group(1)
    context = getattr(exc, "context", None)
    collection = getattr(program, "collection", None)
    if word.startswith("-"):
        flags = context.flags if context is not None else program.initial_context.flags
        known = [str(flag) for flag in flags]
    elif collection is not None:
        known = list(collection.task_names)
    else:
        return ""
    close = difflib.get_close_matches(word, known, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


program = MovelibProgram(name="Invoke", binary="inv[oke]", binary_names=["invoke", "inv"],
                         version=__version__)


def main() -> None:
    """The ``inv`` entry point."""
    program.run()


if __name__ == "__main__":
    main()
