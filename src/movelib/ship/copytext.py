"""COPY's text format, as a dump's rows are written in it: a field's escapes read back, SQL
NULL, the end-of-data line, a number as movelib (and COPY) writes it. Nothing here imports a
database driver: a second process that reads a dump's rows (:mod:`.drafts`) starts with it."""

from __future__ import annotations

import re

from ..base.text import shown

END_OF_DATA = b"\\.\n"
NULL = b"\\N"  # COPY's text format writes SQL NULL so
_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)
_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _unescape(match: re.Match[bytes]) -> bytes:
    octal, hexa, char = match.groups()
    if octal:
        return bytes([int(octal, 8) & 0xFF])
    if hexa:
        return bytes([int(hexa, 16)])
    return _SIMPLE.get(char, char)


def copy_text(raw: bytes) -> str:
    """A field of COPY's text format (not NULL), as text."""
    if b"\\" in raw:
        raw = _ESCAPE.sub(_unescape, raw)
    return raw.decode("utf-8", "replace")


def copy_keys(fields: list[bytes]) -> list[bytes]:
    """Text fields (not NULL) as a merge keys them: their UTF-8, unescaped (one scan of them
    all where none is escaped or beyond ASCII, the common case)."""
    joined = b"".join(fields)
    if b"\\" not in joined and joined.isascii():
        return fields
    return [copy_text(field).encode("utf-8") if b"\\" in field or not field.isascii() else field
            for field in fields]


def copy_field(raw: bytes) -> str | None:
    """A field of COPY's text format: None for NULL."""
    return None if raw == NULL else copy_text(raw)


PLAIN_NUMBERS = re.compile(rb"[1-9][0-9]*(?:\n[1-9][0-9]*)*")  # plain_number's, one a line


def plain_number(raw: bytes) -> bool:
    """``raw`` is a whole number from 1 up as movelib (and COPY) writes it: ASCII digits, no
    leading zero. ``int()`` would also take " 1", "+1", "1_0" and "01"."""
    return raw.isdigit() and not raw.startswith(b"0")


class NotANumber(ValueError):
    """A dump's row whose version (or id) is not a number as movelib writes it."""

    def __init__(self, table: str, slug: str, raw: bytes, what: str = "version",
                 line: int = 0) -> None:
        value = copy_field(raw)
        shown_value = "NULL" if value is None else f"'{shown(value, 20)}'"
        super().__init__(f"{f'line {line}: ' if line else ''}a row of {table} (slug "
                         f"'{shown(slug, 60)}') has the {what} {shown_value}, where movelib "
                         "writes a whole number from 1 up")
