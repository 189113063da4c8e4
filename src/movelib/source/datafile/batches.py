"""Reading a JSON array of records in batches of 128 KiB, parsed by orjson.

The fast path's reader: it proves each cut fell between two records, counts string delimiters
so that a dropped duplicate key shows, and raises :class:`NeedsReport`, the one signal that
sends a file to the precise report, for anything it cannot vouch for.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

BATCH_BYTES = 1 << 17  # 128 KiB: faster than larger batches (they fit the caches) and lighter
BOUNDARY = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")  # between two records, or two nested objects
_CUT_BEGUN = re.compile(rb"[ \t\r\n]*(?:,[ \t\r\n]*)?")  # what may follow a '}' where a cut is under way
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_WHITESPACE = b" \t\r\n"
MAX_RETRIES = 4


class NeedsReport(Exception):
    """The fast pass met something it cannot vouch for: the precise (slow) pass will say what.

    The only exception the fast path raises on purpose; any other is a bug and propagates.
    """


def delimiters(text: bytes | bytearray) -> int:
    """How many string delimiters (unescaped double quotes) ``text`` holds: twice its strings."""
    quotes = text.count(b'"')
    if b"\\" in text:
        quotes -= _ESCAPE.findall(text).count(b'\\"')
    return quotes


def blocks(path: Path, digest: Any = None, start: int = 0, stop: int | None = None,
           before: bytes = b"", after: bytes = b"") -> Iterator[bytes]:
    """The bytes ``[start, stop)`` of ``path`` in blocks, hashed into ``digest`` as read, with
    ``before`` and ``after`` (not hashed) around them."""
    if before:
        yield before
    with path.open("rb") as handle:
        handle.seek(start)
        left = None if stop is None else stop - start
        while left is None or left > 0:
            block = handle.read(BATCH_BYTES if left is None else min(BATCH_BYTES, left))
            if not block:
                break
            if digest is not None:
                digest.update(block)
            if left is not None:
                left -= len(block)
            yield block
    if after:
        yield after


class Batches:
    """The records of a JSON array, parsed by orjson 128 KiB at a time.

    Each batch is cut after a ``},{`` between records; as a JSON value cannot end early, a batch
    that parses as an array proves that its cut fell between two top-level records (a cut
    inside a string or a nested value cannot parse), and a batch that does not parse is retried
    with more of the file. orjson keeps the last of two equal keys, so duplicates are found by
    counting: every string of the text must be in the parsed records (:func:`delimiters` on
    both sides, see :meth:`finish`).

    Anything unexpected raises :class:`NeedsReport`: the careful pass then reports it. That
    includes what orjson refuses to parse but the reference parser reads, to report it: a lone
    surrogate (``"\\ud800"``), an integer too large for a double.
    """

    def __init__(self, blocks: Iterator[bytes], digest: Any = None) -> None:
        self.blocks = blocks
        self.digest = digest  # what hashes the blocks, when the caller wants it back
        self.raw_strings = 0

    @classmethod
    def of_file(cls, path: Path) -> Batches:
        digest = hashlib.sha256()
        return cls(blocks(path, digest), digest)

    def _read(self) -> bytes:
        return next(self.blocks, b"")

    def _more(self, buf: bytearray) -> tuple[bytearray, bool]:
        """``buf`` and the next block (appended in place: a record of many blocks costs no
        copy per block); whether the text has ended."""
        block = self._read()
        buf += block
        return buf, not block

    def __iter__(self) -> Iterator[list[Any]]:
        first = self._read().lstrip(_WHITESPACE)
        if not first.startswith(b"["):
            raise NeedsReport("not an array")
        buf, eof, final, failures = bytearray(first[1:]), False, False, 0
        searched = 0  # where the search for a cut starts: a long record is searched once
        while True:
            while not eof and len(buf) < BATCH_BYTES:
                buf, eof = self._more(buf)
            last = None
            if not final:
                for last in BOUNDARY.finditer(buf, searched):  # noqa: B007 (the last one)
                    pass
            if last is None and not eof:  # one record longer than a batch: read on
                # a cut that spans what is read next begins at the last '}' read so far, if
                # nothing but blanks and a comma follow it; else the search resumes at the end
                brace = buf.rfind(b"}", searched)
                searched = brace if brace >= 0 and _CUT_BEGUN.fullmatch(buf, brace + 1) else len(buf)
                buf, eof = self._more(buf)
                continue
            searched = 0
            if last is None:
                final = True
                text, rest = buf.rstrip(_WHITESPACE), bytearray()
                if not text.endswith(b"]"):
                    raise NeedsReport("the file ends before the closing ']' of the array of movements")
                text = text[:-1]
            else:
                text, rest = buf[: last.start() + 1], buf[last.end() - 1:]
            try:
                batch = orjson.loads(b"[" + text + b"]")
            except orjson.JSONDecodeError:
                failures += 1
                if final or failures > MAX_RETRIES:
                    raise NeedsReport("syntax") from None
                buf, eof = self._more(buf)  # the cut may have fallen inside a record
                final = eof
                continue
            failures = 0
            if b"\\u0000" in text:  # NUL, which PostgreSQL text cannot hold (or an escaped "\\")
                raise NeedsReport("\\u0000")
            self.raw_strings += delimiters(text)
            yield batch
            if final:
                return
            buf = rest

    def finish(self, parsed_strings: int) -> None:
        """Raise unless every string of the text was in the parsed records (no duplicate key
        was dropped)."""
        if parsed_strings != self.raw_strings:
            raise NeedsReport("duplicate keys")
