"""How a value from outside (a file name, a slug, a key, a message quoting them) appears in
output: control characters (ANSI escapes among them) escaped, and cut with a visible marker, so
a hostile file can neither drive the terminal nor flood it."""

from __future__ import annotations

import os
import re
from pathlib import Path

SHOWN_CHARS = 200  # the longest value shown whole
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: object, limit: int = SHOWN_CHARS, *, lines: bool = False) -> str:
    """``value`` as text fit for one line of output (``lines`` keeps newlines and tabs).

    Cut at ``limit`` characters with ``...[N more characters]``; escapes control and
    bidirectional-override characters as ``\\xNN`` / ``\\uNNNN``.
    """
    text = str(value)
    more = len(text) - limit
    if more > 0:
        text = text[:limit]
    if not lines:
        text = text.replace("\n", "\\n").replace("\t", "\\t")
    text = _CONTROL.sub(_escape, text)
    return f"{text}...[{more} more characters]" if more > 0 else text


def as_json(data: object) -> str:
    """A result's ``as_dict()`` as the text ``--json`` prints: indented, keys sorted."""
    import json

    return json.dumps(data, indent=2, sort_keys=True)


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as every message shows it: normalised (``a/../b`` is ``b``), relative to the
    working directory when it is under it, else absolute; then as :func:`shown`."""
    absolute = Path(os.path.abspath(path))  # abspath normalises; resolve() would follow links
    try:
        text = str(absolute.relative_to(os.getcwd()))
    except (ValueError, OSError):  # elsewhere, or the working directory is gone
        text = str(absolute)
    return shown(text)
