"""Asking a person before a destructive step, and never hanging when nobody is there."""

from __future__ import annotations

import sys
from typing import TextIO

from .console import mintty_hint
from .errors import ConfirmationRequired


def confirm(question: str, *, assume_yes: bool, answer: str = "yes",
            stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
    """Return when confirmed; raise :class:`ConfirmationRequired` otherwise.

    Without a terminal on stdin and without ``assume_yes`` it refuses at once (CI must say
    ``--yes``); it never waits for input that cannot come.
    """
    if assume_yes:
        return
    reply = typed_reply(f"{question}\nType {answer!r} to continue: ", stdin=stdin, stdout=stdout)
    if reply is None:
        raise ConfirmationRequired(
            "refusing: there is no terminal to ask for confirmation on; pass --yes to confirm "
            f"(nothing was touched){mintty_hint()}"
        )
    if reply != answer:
        raise ConfirmationRequired("not confirmed; nothing was touched")


def typed_reply(prompt: str, *, stdin: TextIO | None = None,
                stdout: TextIO | None = None) -> str | None:
    """The line a person types after ``prompt`` (stripped), or None at once when ``stdin`` is no
    terminal: the one way movelib asks, so that nothing ever waits for input that cannot come.
    ``stdin`` and ``stdout`` default to the process's."""
    if not has_terminal(stdin):
        return None
    stdout = stdout or sys.stdout
    stdout.write(prompt)
    stdout.flush()
    return (stdin or sys.stdin).readline().strip()


def has_terminal(stdin: TextIO | None = None) -> bool:
    """Whether a person can be asked on ``stdin`` (default ``sys.stdin``)."""
    stdin = stdin or sys.stdin
    return stdin is not None and stdin.isatty()
