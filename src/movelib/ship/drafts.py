"""The digests of a dump's drafts, which a restore's comparison decides "the same" by
(:mod:`.dumplibrary`): per draft, the sha256 of its document field as COPY writes it and the
content hash movelib computes of the document.

They were a third of the check of a large dump, all of it on the one core the check runs on,
while the other one hashed the file now and then. So for a large dump they are computed in a
second process (:class:`Helper`), which reads the drafts' table from the file itself while the
check reads the rest. What it read is bound to what the check read: the same bytes, by their
size and sha256 (a file changed between the two reads is refused). Where no second process
starts, or it fails, this process reads the table again and computes them itself.

:func:`main` is that second process's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from hashlib import sha256
from itertools import chain
from pathlib import Path
from typing import IO, Any

import orjson

from ..base.errors import ArtifactError
from ..base.spill import dump_block, load_blocks
from ..base.text import shown_path
from ..source.datafile.canonical import canonical_bytes
from .compress import is_compressed, opened
from .copytext import END_OF_DATA, copy_keys, copy_text

# (slug, version, document): the drafts' table's columns a draft's record is made of
Columns = tuple[int, int, int]
# One draft: its slug's UTF-8 (unescaped), its version as COPY wrote it (the check holds it to
# a number), the sha256 of its document field, the document's content hash ("" where movelib's
# canonical form is not held to the database's: not a movement's shape, or not JSON)
Draft = tuple[bytes, bytes, bytes, str]
HELPER_DRAFTS = 20_000  # drafts from which a dump's are hashed in a second process
_READ = 1 << 20  # bytes the second process reads at a time


def drafts(block: bytes, columns: Columns) -> list[Draft]:
    """The drafts of ``block`` (whole lines of the drafts' table's COPY data), in its order."""
    slug, version, document = columns
    rows = block.split(b"\n")
    rows.pop()
    heads = [row.split(b"\t", max(columns) + 1) for row in rows]
    fields = [head[document] for head in heads]
    return list(zip(copy_keys([head[slug] for head in heads]), [head[version] for head in heads],
                    [sha256(field).digest() for field in fields], map(content_hash, fields),
                    strict=True))


def content_hash(field: bytes) -> str:
    """The content hash of a draft's document field as movelib computes it (sha256 of the
    canonical form), when the document is a movement's shape (an object of strings and lists of
    strings, where the SQL canonical form is held to Python's); "" otherwise or when it does
    not parse."""
    try:
        document = orjson.loads(field if b"\\" not in field else copy_text(field).encode("utf-8"))
    except (orjson.JSONDecodeError, UnicodeError):
        return ""
    if not _movement_shaped(document):
        return ""
    return sha256(canonical_bytes(document)).hexdigest()


_TEXT, _TEXT_OR_LISTS = {str}, {str, list}


def _movement_shaped(document: Any) -> bool:
    """Whether ``document`` (as orjson parses it: exact types) is an object of strings and lists
    of strings, its values' types gathered in C loops (a third of the time of ``isinstance``
    value by value, measured on 100k drafts)."""
    if type(document) is not dict:
        return False
    values = document.values()
    kinds = set(map(type, values))
    if kinds <= _TEXT:
        return True
    return kinds <= _TEXT_OR_LISTS and set(map(type, chain.from_iterable(
        [value for value in values if type(value) is list]))) <= _TEXT


def read_table(path: Path, compressed: dict[str, object] | None, start: int, columns: Columns,
               out: IO[bytes]) -> None:
    """The drafts of the table whose COPY data starts ``start`` bytes into ``path``'s SQL,
    written to ``out`` a block at a time (:func:`~movelib.base.spill.dump_block`), up to its
    end-of-data line; then the size and sha256 of the data read (a tuple)."""
    digest, size = sha256(), 0
    with _sql_from(path, compressed, start) as (read, buffer):
        while True:
            more = read(_READ)
            buffer += more
            if buffer.startswith(END_OF_DATA):
                break
            end = buffer.find(b"\n" + END_OF_DATA)
            cut = end + 1 if end >= 0 else buffer.rfind(b"\n") + 1
            if cut:
                data, buffer = buffer[:cut], buffer[cut:]
                digest.update(data)
                size += len(data)
                dump_block(drafts(data, columns), out)
            if end >= 0 or not more:
                break
    dump_block((size, digest.digest()), out)


@contextmanager
def _sql_from(path: Path, compressed: dict[str, object] | None, start: int,
              ) -> Iterator[tuple[Callable[[int], bytes], bytes]]:
    """A reader of ``path``'s SQL from byte ``start`` on, and what it already read from there:
    a plain file from a seek, a .sql.gz inflated from its start."""
    if not is_compressed(path):
        with path.open("rb") as handle:
            handle.seek(start)
            yield handle.read, b""
        return
    with opened(path, compressed, _READ) as shipped:
        buffer, left = b"", start
        while left > 0 and (piece := shipped.handle.read()):  # what precedes the table
            buffer, left = piece[left:], left - len(piece)
        yield (lambda _: shipped.handle.read()), buffer


class Helper:
    """The drafts of a large dump hashed in a second process (``with Helper(path, compressed)
    as helper:``): :meth:`start` once the check reaches their table, :meth:`results` after the
    check read it (and the rest of the file). The process is stopped, and its files removed,
    when the ``with`` ends, however it ends (Ctrl-C included)."""

    def __init__(self, path: Path, compressed: dict[str, object] | None) -> None:
        self.path, self.compressed = path, compressed
        # its files may still be open where a refusal leaves (Windows cannot remove them then)
        self._where = tempfile.TemporaryDirectory(prefix="movelib-drafts-",
                                                  ignore_cleanup_errors=True)
        self._out = Path(self._where.name) / "drafts"
        self._started: tuple[int, Columns] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._where.cleanup()

    def start(self, start: int, columns: Columns) -> None:
        """Hash the drafts of the table whose data starts ``start`` bytes into the SQL, in a
        second process (this one does it in :meth:`results` where none starts). The process
        imports from where this one does: this process's ``sys.path``, its absolute entries (the
        current folder, "", left out: a module planted where a restore is run from is not
        imported), in isolated mode (``-I``: no environment variable or user folder adds one)."""
        self._started = (start, columns)
        paths = [entry for entry in sys.path if os.path.isabs(entry)]
        command = [sys.executable or "", "-I", "-c", _MAIN, json.dumps(paths), str(self.path),
                   str(start), *map(str, columns), str(self._out), json.dumps(self.compressed)]
        try:
            with (Path(self._where.name) / "errors").open("wb") as errors:
                self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.DEVNULL, stderr=errors)
        except (OSError, ValueError):  # no interpreter to start (an embedded Python): here
            self._process = None

    def results(self, size: int, digest: bytes) -> Generator[list[Draft], None, None]:
        """The drafts, a block at a time, once the second process read the same ``size`` bytes
        with the same sha256 (``digest``) as the check (its last record, which it must hold);
        else the file changed between the two reads, and is refused. (Close the iterator when
        leaving it early: it holds the file.)"""
        assert self._started is not None, "results() before start()"
        done = self._process is not None and self._process.wait() == 0
        if not done:  # no second process, or it failed: this one reads the table again
            start, columns = self._started
            with self._out.open("wb") as out:
                read_table(self.path, self.compressed, start, columns, out)
        bound = False
        with self._out.open("rb") as handle:
            for block in load_blocks(handle):
                if isinstance(block, list) and not bound:
                    yield block
                elif bound or tuple(block) != (size, digest):
                    break
                else:
                    bound = True
            else:
                if bound:
                    return
        raise ArtifactError(f"{shown_path(self.path)} changed while it was read (its drafts are "
                            "not the bytes its check read); refusing it")


# The second process: this process's sys.path, then main() with the rest of its arguments
_MAIN = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
         "from movelib.ship.drafts import main; main(sys.argv[2:])")


def main(argv: list[str]) -> None:
    """The second process (:data:`_MAIN`), its arguments ``DUMP START SLUG VERSION DOCUMENT OUT
    COMPRESSED``: :func:`read_table` into the file OUT (COMPRESSED: the manifest's record of a
    compressed dump, as JSON). Ctrl-C is the parent's to handle: it stops this process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, start, slug, version, document, out, compressed = argv
    with open(out, "wb") as handle:
        read_table(Path(path), json.loads(compressed), int(start),
                   (int(slug), int(version), int(document)), handle)

