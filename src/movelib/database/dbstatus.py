"""``inv db.status``'s second part: for each running emulator, what its database holds (its
environment label and its latest provenance record), read over a quick connection each."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

from ..base.secrets import redact
from ..base.text import shown
from .provenance import latest
from .tables import environment_label
from .target import target_from_profile

if TYPE_CHECKING:
    from .emulator import EmulatorStatus
    from .settings import Settings

STATUS_CONNECT_TIMEOUT = 2  # db.status asks every running emulator: it must stay quick


def status_lines(settings: Settings, statuses: list[EmulatorStatus]) -> list[str]:
    """One line per running emulator: what its database holds (a quick connection each)."""
    lines = []
    for status in statuses:
        if status.running:
            lines.append(f"  {status.profile}: {_held_by(settings, status.profile)}")
    return ["provenance:", *lines] if lines else []


def _held_by(settings: Settings, profile: str) -> str:
    target = target_from_profile(settings.profile(profile))
    try:
        with psycopg.connect(target.conninfo, connect_timeout=STATUS_CONNECT_TIMEOUT,
                             autocommit=True, application_name="movelib status",
                             prepare_threshold=None) as conn:
            found = latest(conn)
            label = environment_label(conn)
    except psycopg.Error as exc:
        return f"cannot read it ({shown(redact(' '.join(str(exc).split())), 120)})"
    held = found if isinstance(found, str) else found.describe()
    return f"[{label}] {held}" if label else held  # a production label is seen at a glance
