"""Production is never touched by accident.

A database labelled ``production`` (``inv migrate --environment production``) accepts a seed,
a restore or a migration only with ``--allow-protected`` plus the database's name, typed at a
prompt or given as ``--confirm <dbname>`` (for CI). ``--yes`` alone is never enough there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import psycopg

from ..base.console import mintty_hint
from ..base.errors import ProtectedTarget
from ..base.prompt import typed_reply
from .tables import environment_label
from .target import Target

PROTECTED = {"production"}


@dataclass(frozen=True)
class Permission:
    allow_protected: bool = False
    confirm: str | None = None  # the database name, typed in advance (CI)
    stdin: TextIO | None = None  # where to ask (tests); default sys.stdin
    stdout: TextIO | None = None


def check_protected(conn: psycopg.Connection, target: Target, permission: Permission,
                    action: str) -> None:
    """Return if ``action`` may write to ``target``; raise :class:`ProtectedTarget` if not."""
    label = environment_label(conn)
    if label not in PROTECTED:
        return
    dbname = target.dbname
    where = f"{target.describe()} is labelled {label}"
    if not permission.allow_protected:
        raise ProtectedTarget(
            f"refusing to {action}: {where}. To go ahead on purpose, pass --allow-protected and "
            f"confirm the database name (typed at the prompt, or --confirm {dbname} in CI)"
            + ("; --yes is not enough here" if action == "restore" else "")  # the task with --yes
        )
    if permission.confirm is not None:
        if permission.confirm != dbname:
            raise ProtectedTarget(
                f"refusing to {action}: --confirm {permission.confirm!r} does not name the "
                f"target database ({where})"
            )
        return
    typed = typed_reply(f"{where}. Type the database name to {action}: ",
                        stdin=permission.stdin, stdout=permission.stdout)
    if typed is None:
        raise ProtectedTarget(
            f"refusing to {action}: {where} and there is no terminal to type its name on; "
            f"pass --confirm {dbname}{mintty_hint()}"
        )
    if typed != dbname:
        raise ProtectedTarget(f"refusing to {action}: the typed name does not match; nothing "
                              "was touched")
