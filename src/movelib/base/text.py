"""How a value from outside (a file name, a slug, a key, a message quoting them) appears in
output: control characters (ANSI escapes among them) escaped, and cut with a visible marker, so
a hostile file can neither drive the terminal nor flood it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

SHOWN_CHARS = 200  # the longest value shown whole
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """``text`` with every control character but line breaks and tabs escaped (``\\x1b``): what
    reaches a terminal, whatever a dump, a database or a server's message put in it, can
    neither move the cursor, clear the screen, set the title nor ring the bell."""
    return _CONTROL.sub(_escape, text)


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
    return "".join(json_chunks(data))


JSON_BLOCK = 1 << 16  # characters of JSON text handed on at a time by json_blocks


def json_chunks(data: object) -> Iterator[str]:
    """The text of :func:`as_json` in pieces, each whole value rendered by ``json.dumps``
    (``indent=2, sort_keys=True``): the same bytes, with one difference in what it accepts. A
    value that is an iterator (a generator of a million movements' dicts) is written as a list
    while it is consumed, one item at a time, and never held whole."""
    yield from _chunks(data, 0)


def json_blocks(data: object, size: int = JSON_BLOCK) -> Iterator[str]:
    """:func:`json_chunks` cut into blocks of whole lines of about ``size`` characters, each
    without its last line break: printed one per line, they are the text of :func:`as_json`."""
    pending: list[str] = []
    held = 0
    for chunk in json_chunks(data):
        pending.append(chunk)
        held += len(chunk)
        if held >= size:
            text = "".join(pending)
            cut = text.rfind("\n")
            if cut < 0:
                pending, held = [text], len(text)
                continue
            yield text[:cut]
            pending, held = [text[cut + 1:]], len(text) - cut - 1
    yield "".join(pending)


def _chunks(value: object, level: int) -> Iterator[str]:
    import json

    pad = "\n" + "  " * (level + 1)
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        for n, key in enumerate(sorted(value)):
            yield ("{" if n == 0 else ",") + pad + json.dumps(key) + ": "
            yield from _chunks(value[key], level + 1)
        yield pad[:-2] + "}"
    elif isinstance(value, Iterator):
        empty = True
        for item in value:  # each item is a whole value (its own iterators are not streamed)
            yield ("[" if empty else ",") + pad + _whole(item, level + 1)
            empty = False
        yield "[]" if empty else pad[:-2] + "]"
    else:
        yield _whole(value, level)


def _whole(value: object, level: int) -> str:
    import json

    text = json.dumps(value, indent=2, sort_keys=True)
    return text.replace("\n", "\n" + "  " * level) if level and "\n" in text else text


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as every message shows it: normalised (``a/../b`` is ``b``), relative to the
    working directory when it is under it, else absolute; then as :func:`shown`."""
    absolute = Path(os.path.abspath(path))  # abspath normalises; resolve() would follow links
    try:
        text = str(absolute.relative_to(os.getcwd()))
    except (ValueError, OSError):  # elsewhere, or the working directory is gone
        text = str(absolute)
    return shown(text)
