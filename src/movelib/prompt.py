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
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if stdin is None or not stdin.isatty():
        raise ConfirmationRequired(
            "refusing: there is no terminal to ask for confirmation on; pass --yes to confirm "
            f"(nothing was touched){mintty_hint()}"
        )
    stdout.write(f"{question}\nType {answer!r} to continue: ")
    stdout.flush()
    reply = stdin.readline()
    if reply.strip() != answer:
        raise ConfirmationRequired("not confirmed; nothing was touched")


def has_terminal(stdin: TextIO | None = None) -> bool:
    """Whether a person can be asked on ``stdin`` (default ``sys.stdin``)."""
    stdin = stdin or sys.stdin
    return stdin is not None and stdin.isatty()
