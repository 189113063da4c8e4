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
from invoke.parser.argument import Argument
from invoke.parser.context import ParserContext
from invoke.program import Program

from movelib.base.errors import COULD_NOT_ANSWER as USAGE  # bad usage: could not answer

HINT = "  `inv --list` lists the tasks, `inv TASK --help` a task's options"
# invoke's flags for the shell commands its tasks run (``c.run``): no movelib task runs one, so
# each would be a no-op that looks like a promise (`inv --dry restore ...` restored).
SHELL_FLAGS = ("command-timeout", "dry", "echo", "hide", "prompt-for-sudo-password", "pty",
               "warn-only")
# invoke's own letters that stay: every other of its short flags (-d, -f, -p, -c, -r, -e, -w,
# -R, -T, -D, -F) is a task's letter here (SHORT_FLAGS), typed before the task by mistake.
CORE_LETTERS = ("h", "l", "V")


class MovelibProgram(Program):
    """Bad usage exits 2 with an invoke-style suggestion, wherever invoke finds it: a core
    flag, a task, a task's flag, ``--help X`` or ``--list X`` naming nothing, no tasks.py."""

    def core_args(self) -> list[Argument]:
        """invoke's core flags, less its shell-command flags and its short letters but -h, -l
        and -V (see :data:`SHELL_FLAGS`, :data:`CORE_LETTERS`)."""
        return [_long_only(arg) for arg in super().core_args() if arg.name not in SHELL_FLAGS]

    def task_args(self) -> list[Argument]:
        return [_long_only(arg) for arg in super().task_args()]

    def update_config(self, merge: bool = True) -> None:
        """invoke's, without the shell-command flags (:data:`SHELL_FLAGS`) it reads."""
        if "no-dedupe" in self.args and self.args["no-dedupe"].value:
            self.config.load_overrides({"tasks": {"dedupe": False}}, merge=False)
        runtime = self.args.config.value or os.environ.get("INVOKE_RUNTIME_CONFIG")
        self.config.set_runtime_path(runtime)  # type: ignore[arg-type]  # invoke passes a str too
        self.config.load_runtime(merge=False)
        if merge:
            self.config.merge()

    def parse_core(self, argv: Any) -> None:
        with _usage(self, values=True):
            _refuse_shell_flags(argv if argv is not None else sys.argv)
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

    def parse_collection(self) -> None:
        """A bare ``inv --help`` lists the tasks too: load them before invoke prints it."""
        if self.args.help.value is True and self.namespace is None:
            try:
                self.load_collection()
                self.collection_loaded = True
                self.list_root, self.list_depth, self.list_format = None, None, "flat"
                self.scoped_collection = self.collection
            except Exit:  # no tasks.py here: invoke's help alone
                pass
            self.print_help()
            raise Exit
        with _usage(self):
            super().parse_collection()

    def parse_tasks(self) -> None:
        with _usage(self, values=True):
            self.parser = self._make_parser()
            assert self.parser.initial is not None
            wanted = _read_tasks(self.parser.contexts, self.parser.initial, self.core.unparsed)
            if wanted is not None:  # `inv TASK --help` (or -h): that task's help, nothing run
                self.print_task_help(wanted)
                raise Exit
            # invoke's parse_tasks, on this parser: a second one would lack the help texts
            # (invoke's Task.arg_opts pops each from the task as it builds an argument)
            result = self.parser.parse_argv(self.core.unparsed)
            self.core_via_tasks = result.pop(0)
            self._update_core_context(context=self.core[0], new_args=self.core_via_tasks.args)
            self.tasks = result

    def parse_cleanup(self) -> None:
        with _usage(self):
            super().parse_cleanup()

    def print_task_help(self, name: str) -> None:
        """invoke's task help, its usage line naming the positional arguments as the docs
        spell the command (``inv restore DUMP_FILE [--options]``)."""
        import io
        from contextlib import redirect_stdout

        context = self.parser.contexts[name]
        words = [arg.name.upper().replace("-", "_") for arg in context.positional_args]
        with redirect_stdout(io.StringIO()) as text:
            super().print_task_help(name)
        _, rest = text.getvalue().split("\n", 1)
        print(f"Usage: inv {' '.join([name, *words])} [--options]")
        print(rest, end="")

    def print_help(self) -> None:
        """invoke's help, then the exit-code contract (``inv --help TASK`` has it too)."""
        import textwrap

        from movelib.base.errors import EXIT_CODES  # help texts only: nothing heavy

        super().print_help()
        if getattr(self, "collection_loaded", False):
            self.list_tasks()
        print(textwrap.fill(EXIT_CODES[0].upper() + EXIT_CODES[1:] + ".", width=78,
                            initial_indent="  ", subsequent_indent="  ") + "\n")

    def run(self, argv: Any = None, exit: bool = True) -> None:
        try:
            super().run(argv, exit)
        except OSError as exc:  # `inv --list | head -1`: the reader has gone, and so may we
            from movelib.base.console import drop_output

            drop_output(sys.stdout, exc)


def _long_only(arg: Argument) -> Argument:
    """``arg`` without its short letter unless it is one of :data:`CORE_LETTERS`."""
    arg.names = tuple(n for n in arg.names if len(n) > 1 or n in CORE_LETTERS)
    return arg


def _refuse_shell_flags(argv: Any) -> None:
    """invoke's shell-command flags, anywhere: a clear refusal instead of a silent no-op."""
    words = argv.split() if isinstance(argv, str) else list(argv)
    for word in words[1:]:
        if word == "--":
            break
        name = word.split("=", 1)[0].removeprefix("--")
        if word.startswith("--") and name in SHELL_FLAGS:
            advice = ("; a task's own --dry-run previews without writing (`inv restore DUMP "
                      "--dry-run`, `inv seed --dry-run`)" if name == "dry" else "")
            raise ParseError(f"--{name} is invoke's option for the shell commands a task runs, "
                             f"and no movelib task runs one: it would change nothing{advice}")


def _read_tasks(contexts: dict[str, ParserContext], initial: ParserContext,
                words: list[str]) -> str | None:
    """Read the task part of a command line as invoke will, to catch what invoke would read
    wrongly: ``--help``/``-h`` after a task (the task's help: the name returned), a flag the
    task does not have (invoke would take a misspelt ``--yess`` as a positional value), and a
    flag typed before any task (the letters of invoke's own flags were traps). invoke's own
    flags (``initial``) stay allowed after a task."""
    context: ParserContext | None = None
    name = ""
    positional = 0  # positional values the current task still takes
    words = list(words)
    while words:
        word = words.pop(0)
        if word == "--":
            return None
        if word.startswith("-") and len(word) > 1 and not _number(word):
            if context is None:
                raise ParseError(_before_task(word, contexts, words))
            flag = word.split("=", 1)[0]
            if flag in ("--help", "-h") and flag not in context.flags:
                return name
            arg = _flag(context, flag) or _flag(initial, flag)
            if arg is None:
                raise ParseError(f"inv {name}: no option {flag}{_closest(flag, context)}")
            if arg.positional:
                positional -= 1
            if arg.takes_value and "=" not in word and words and not (
                    arg.optional and words[0].startswith("-")):
                words.pop(0)
            continue
        if context is not None and positional > 0:
            positional -= 1
            continue
        if word not in contexts:
            if context is not None and ("--help" in words or "-h" in words):
                return name  # help asked for wins over a stray word
            return None  # invoke names it ("No idea what ... is", with a suggestion)
        context, name = contexts[word], word
        positional = len(context.positional_args)
    return None


def _number(word: str) -> bool:
    return word[1:].replace(".", "", 1).isdigit()


def _flag(context: ParserContext, flag: str) -> Argument | None:
    """The argument ``flag`` names in ``context`` (also ``--no-x``), or None."""
    if flag in context.flags:
        found: Argument = context.flags[flag]
        return found
    if flag in context.inverse_flags:
        inverse: Argument = context.flags[context.inverse_flags[flag]]
        return inverse
    return None


def _closest(flag: str, context: ParserContext) -> str:
    close = difflib.get_close_matches(flag, list(context.flags), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _before_task(flag: str, contexts: dict[str, ParserContext], rest: list[str]) -> str:
    """Why ``flag``, typed before any task, is refused, and where it goes."""
    owner = next((w for w in rest if w in contexts), None)
    having = sorted(n for n, c in contexts.items() if _flag(c, flag.split("=", 1)[0]))
    if owner is not None and owner in having:
        arg = _flag(contexts[owner], flag.split("=", 1)[0])
        value = f" {rest[0]}" if arg and arg.takes_value and "=" not in flag and rest \
            and rest[0] != owner else ""
        return (f"{flag} goes after the task it belongs to: `inv {owner} {flag}{value}` (before "
                f"a task, inv takes only -h, -l, -V and its long options)")
    if having:
        return (f"{flag} is an option of {', '.join(having[:4])}{' ...' if len(having) > 4 else ''}"
                ": give it after the task (before a task, inv takes only -h, -l, -V and its long "
                "options)")
    return f"No idea what '{flag}' is!"  # (a suggestion follows)


@contextmanager
def _usage(program: Program, values: bool = False) -> Iterator[None]:
    """invoke's parse errors, and its exit 1 for a name that is not there, as exit 2; with
    ``values`` also a flag's value of the wrong type (``--list-depth x``), a traceback before."""
    try:
        yield
    except ParseError as exc:
        raise Exit(_shown(f"{exc}{suggestion(program, exc)}\n{HINT}"), code=USAGE) from None
    except ValueError as exc:
        if not values:
            raise
        raise Exit(_shown(f"{exc}\n{HINT}"), code=USAGE) from None
    except Exit as exc:
        if exc.code != 1 or not exc.message:
            raise
        raise Exit(_shown(exc.message), code=USAGE) from None


def _shown(message: str) -> str:
    """A parse error quotes what was typed: a DSN's password masked, control characters
    escaped, as every task's output."""
    from movelib.base.secrets import redact
    from movelib.base.text import terminal_safe

    return terminal_safe(redact(message))


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
