"""Reading a seed dump as data: every line checked against what movelib writes there.

:func:`read_dump` walks a file against the :class:`~movelib.ship.dumpformat.Layout` movelib renders
for the manifest's migrations, in blocks of a megabyte (memory stays flat however large the
dump). It yields :class:`Sql` holding movelib's own rendering, never the file's text, and
:class:`Rows`: a known table's COPY data, in blocks of whole lines, each line checked to have
one field per known column. Anything else (an extra statement, a psql meta-command, a COPY
into another table or column list, a table twice, data after the footer, a missing footer)
stops the walk with its line number. The same walk is the check before any connection
(:func:`check_dump`) and the apply inside the restore's transaction.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

from ..base.errors import ArtifactError
from ..base.text import shown_path
from ..database.migrations import checkout_migrations
from ..database.yoyo_tables import YOYO_SCHEMA_VERSION, yoyo_hash
from ..source.datafile import Progress
from .compress import Blocks, opened
from .copytext import END_OF_DATA
from .dumpformat import Layout, Table, render
from .dumplibrary import DumpLibrary
from .manifest import Manifest

BLOCK = 1 << 20
Extents = dict[str, tuple[int, int]]  # a table's COPY data in the file: its bytes and lines
# Rows are bounded by the movement schema (kilobytes); a longer line is not movelib's.
MAX_LINE = 16 << 20
SHOWN = 60  # characters of a line quoted in a message


@dataclass(frozen=True)
class CheckedDump:
    """A dump file whose manifest, sha256 and every line were checked, and what it loads.

    ``manifest_bytes`` are the manifest as read, once: ``manifest`` is parsed from them and a
    signature is checked over them. The load reads the dump again and compares its sha256 with
    ``manifest`` in the same pass, before the commit. ``library`` is the dump's library as the
    checking pass saw it (what a restore's preview compares)."""

    path: Path
    manifest: Manifest
    layout: Layout
    manifest_bytes: bytes = b""
    library: DumpLibrary = field(default_factory=DumpLibrary)
    extents: Extents = field(default_factory=dict)  # each table's data: bytes, lines

    @property
    def manifest_sha256(self) -> str:
        """The sha256 of the manifest bytes (what a restore records beside the signers)."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()


@dataclass(frozen=True)
class Sql:
    text: bytes


@dataclass(frozen=True)
class Rows:
    table: Table
    blocks: Iterator[bytes]
    # the line number of the first line of the block last given out (for a message)
    line: Callable[[], int] = field(default=lambda: 0)
    start: int | None = None  # bytes of the SQL before the table's data


# A restore's two reads of a dump's rows, as its progress names them.
CHECKING = "checking the dump (MB)"
WRITING = "writing (MB of the dump read)"
MB = 1_000_000


class RowsRead:
    """Progress through a dump's rows, in MB of the file, said to ``progress`` (``stage``) as
    each part's blocks (:meth:`counted`) are consumed, and once more at the end (:meth:`finish`)
    unless the last block already said it."""

    def __init__(self, progress: Progress | None, stage: str, size: int) -> None:
        self.progress, self.stage, self.size = progress, stage, size
        self.done = self.said = 0

    def counted(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        if self.progress is None:
            yield from blocks
            return
        for block in blocks:
            self.done += len(block)
            if self.done // MB != self.said:  # said once per MB
                self.said = self.done // MB
                self.progress(self.stage, self.said, self.size // MB)
            yield block

    def finish(self) -> None:
        if self.progress is not None and self.said != self.size // MB:
            self.progress(self.stage, self.size // MB, self.size // MB)


def layout_for(manifest: Manifest, migrations_dir: Path, where: str) -> Layout:
    """What movelib writes for ``manifest``'s migrations; refused when this checkout cannot
    render them or the manifest counts other tables than such a dump holds."""
    migrations = checkout_migrations(migrations_dir, manifest.migrations, manifest.tool_version)
    layout = render(migrations, manifest.created_at, manifest.tool_version)
    names = [t.name for t in layout.tables]
    if sorted(manifest.row_counts) != sorted(names):
        raise ArtifactError(
            f"{where}: row_counts names {', '.join(sorted(manifest.row_counts)) or 'nothing'}, but "
            f"a dump of migrations {', '.join(layout.migrations)} holds {', '.join(names)}; "
            "refusing the dump")
    return layout


def check_dump(path: Path, layout: Layout, manifest: Manifest) -> None:
    """Walk the whole file without a connection; raise :class:`ArtifactError` at the first
    line that is not what movelib writes there."""
    for part in read_dump(path, layout, manifest):
        if isinstance(part, Rows):
            deque(part.blocks, maxlen=0)


def read_dump(path: Path, layout: Layout, manifest: Manifest, *, recheck: bool = True,
              extents: Extents | None = None) -> Iterator[Sql | Rows]:
    """The dump's parts in order. A :class:`Rows` must be consumed before the next part (what
    is left of it is checked and skipped). The file's size and sha256 are compared with the
    manifest's before the last part: a file changed since its check is never committed.
    ``extents``: filled with each table's data size and lines by a read that checks every
    line; a read that does not (``recheck`` False) reads the tables it names by them."""
    with opened(path, manifest.compressed, BLOCK) as shipped:
        reader = _Reader(shipped.handle, shown_path(path), layout.migrations)
        reader.limit = manifest.size  # a compressed file never inflates past the SQL's size
        reader.recheck = recheck
        if extents is not None:
            reader.extents = extents
        reader.expect(layout.head)
        yield Sql(layout.head)
        for table in layout.tables:
            reader.expect(table.opening)
            blocks = reader.rows(table)
            yield Rows(table, blocks, lambda: reader.line, reader.size - len(reader.buf))
            deque(blocks, maxlen=0)
        reader.expect(layout.tail)
        reader.expect_end()
        if (reader.size, shipped.sql_sha256()) != (manifest.size, manifest.sha256):
            raise ArtifactError(f"{shown_path(path)} changed while it was read (its sha256 no longer "
                                "matches the manifest); refusing it")
        shipped.check()
        yield Sql(layout.tail)


def _show(line: bytes, at: int = 0) -> str:
    """``line`` quoted as Python does (a carriage return shows as ``\\r``, a backslash as
    ``\\\\``), at most ``SHOWN`` characters of it: those around byte ``at`` (where two lines
    differ), so that two long lines that differ late do not look the same."""
    if not line:
        return "a blank line"
    begin = at - SHOWN + 10 if at >= SHOWN else 0  # the same window of both lines
    while 0 < begin < len(line) and line[begin] & 0xC0 == 0x80:
        begin -= 1  # not in the middle of a UTF-8 character
    piece = line[begin:begin + SHOWN * 4].decode("utf-8", "replace")
    cut = len(piece) > SHOWN or begin + SHOWN * 4 < len(line)
    return repr(("..." if begin else "") + piece[:SHOWN] + ("..." if cut else ""))


class _Reader:
    """The file in blocks: ``buf`` is the unread rest, starting at line number ``line``."""

    def __init__(self, handle: Blocks, name: str, migrations: tuple[str, ...]) -> None:
        self.handle = handle
        self.name = name
        self.migrations = {m: yoyo_hash(m).encode() for m in migrations}
        self.recorded: set[str] = set()  # migrations _yoyo_migration records
        self.buf = b""
        self.line = 1
        self.size = 0
        self.limit: int | None = None  # bytes the file may hold at most
        # each row checked (the first read); a second read of a file whose every line was checked
        # may rely on the sha256 compared before its last part instead: equal bytes, equal lines
        self.recheck = True
        self.extents: Extents = {}  # per table: its COPY data's bytes and lines

    def _more(self) -> bool:
        block = self.handle.read(BLOCK)
        self.size += len(block)
        if self.limit is not None and self.size > self.limit:
            raise self.refuse(self.line, f"the file holds more than the {self.limit} bytes its "
                                         "manifest gives")
        self.buf += block
        return bool(block)

    def refuse(self, line: int, what: str) -> ArtifactError:
        return ArtifactError(f"{self.name}: line {line}: {what}; refusing the dump, nothing "
                             "was touched")

    def expect(self, text: bytes) -> None:
        """Consume ``text`` exactly, or refuse at its first line that differs."""
        while len(self.buf) < len(text) and self._more():
            pass
        if self.buf.startswith(text):
            self.buf = self.buf[len(text):]
            self.line += text.count(b"\n")
            return
        same = next((i for i, (a, b) in enumerate(zip(self.buf, text, strict=False)) if a != b),
                    min(len(self.buf), len(text)))
        start = text.rfind(b"\n", 0, same) + 1
        line = self.line + text.count(b"\n", 0, start)
        want = text[start:].split(b"\n", 1)[0]
        while b"\n" not in self.buf[start:start + SHOWN * 4] and self._more():
            pass  # enough of the file's line to show it
        if start >= len(self.buf):
            raise self.refuse(line, f"the dump ends here, where movelib writes {_show(want)}")
        has = self.buf[start:].split(b"\n", 1)[0]
        if has == want:
            raise self.refuse(line, f"the dump ends in the middle of {_show(want)}")
        at = same - start
        if has == want + b"\r":
            raise self.refuse(line, f"the dump has Windows (CRLF) line endings: the line ends in "
                              f"\\r\\n ({_show(has, at)}) where movelib writes \\n only "
                              f"({_show(want, at)}). An editor or git's core.autocrlf converted it; "
                              f"use the dump as movelib wrote it (`dos2unix {self.name}`, or a "
                              "checkout where .gitattributes keeps it -text)")
        raise self.refuse(line, f"the dump has {_show(has, at)} where movelib writes "
                                f"{_show(want, at)}")

    def expect_end(self) -> None:
        if self.buf or self._more():
            raise self.refuse(self.line, "there is more after the end of the dump: "
                                         + _show(self.buf.split(b"\n", 1)[0]))

    def rows(self, table: Table) -> Iterator[bytes]:
        """``table``'s COPY data up to its end-of-data line (consumed), in blocks of whole
        lines, every line checked; its size and lines kept in ``extents``. A second read (no
        ``recheck``) takes what the first found there (:meth:`_extent`)."""
        known = None if self.recheck else self.extents.get(table.name)
        if known is not None:
            yield from self._extent(table, *known)
            return
        first, size = self.line, 0
        while True:
            clean = True  # no line but the first of the data starts with \.
            if self.buf.startswith(END_OF_DATA):
                end = 0
            else:
                cut = self.buf.rfind(b"\n") + 1
                found = self.buf.find(b"\n\\.", 0, cut)  # one scan for the end and a mimic
                if found < 0:
                    end = cut
                elif self.buf.startswith(END_OF_DATA, found + 1):
                    end = found + 1
                else:  # a row starting with \. before the end of data: the check refuses it
                    clean = False
                    found = self.buf.find(b"\n" + END_OF_DATA, found, cut)
                    end = found + 1 if found >= 0 else cut
            if end:
                data = self.buf[:end]
                lines = self._check(table, data, clean) if self.recheck else data.count(b"\n")
                yield data
                self.line += lines
                size += len(data)
                self.buf = self.buf[end:]
            if self.buf.startswith(END_OF_DATA):
                self.buf = self.buf[len(END_OF_DATA):]
                self.extents[table.name] = (size, self.line - first)
                self.line += 1
                if (self.recheck and table.name == "_yoyo_migration"
                        and self.recorded != set(self.migrations)):
                    missing = ", ".join(sorted(set(self.migrations) - self.recorded))
                    raise self.refuse(self.line - 1, f"_yoyo_migration does not record {missing}, "
                                                     "which the manifest lists")
                return
            if len(self.buf) > MAX_LINE:
                raise self.refuse(self.line, f"a row of {table.name} longer than "
                                             f"{MAX_LINE >> 20} MiB; movelib writes none")
            if not self._more() and b"\n" not in self.buf:
                raise self.refuse(self.line, f"the dump ends inside the COPY block of "
                                             f"{table.name}, before its end-of-data line")

    def _extent(self, table: Table, size: int, lines: int) -> Iterator[bytes]:
        """``table``'s ``size`` bytes of COPY data (``lines`` lines), as the first read found
        them, in blocks of whole lines, then its end-of-data line: no line is looked for or
        counted again. A file changed since is refused where its rows are not where they were
        (and by its sha256 at the end wherever they are)."""
        changed = ArtifactError(f"{self.name} changed while it was read ({table.name}'s rows are "
                                "not where its check found them); refusing it")
        left = size
        while left:
            cut = self.buf.rfind(b"\n", 0, left) + 1  # the last whole line of the table's
            if cut:
                data, self.buf = self.buf[:cut], self.buf[cut:]
                left -= cut
                yield data
            elif len(self.buf) >= min(left, MAX_LINE) or not self._more():
                raise changed
        while len(self.buf) < len(END_OF_DATA) and self._more():
            pass
        if not self.buf.startswith(END_OF_DATA):
            raise changed
        self.buf = self.buf[len(END_OF_DATA):]
        self.line += lines + 1

    def _check(self, table: Table, data: bytes, clean: bool) -> int:
        """Check ``data``'s lines (``clean``: no line but its first starts with \\.); how many."""
        lines = data.split(b"\n")
        lines.pop()  # data ends with a line break
        tabs = len(table.columns) - 1
        counts = list(map(bytes.count, lines, repeat(b"\t", len(lines))))
        if counts.count(tabs) != len(counts):
            at = next(i for i, n in enumerate(counts) if n != tabs)
            raise self.refuse(self.line + at, f"a row of {table.name} has {counts[at] + 1} "
                                              f"field(s) where {table.name} has {tabs + 1} columns")
        if b"\r" in data:
            at = next(i for i, line in enumerate(lines) if b"\r" in line)
            raise self.refuse(self.line + at, f"a row of {table.name} holds a raw carriage "
                                              "return (COPY writes it as \\r)")
        if data.startswith(b"\\.") or (not clean and b"\n\\." in data):
            at = next(i for i, line in enumerate(lines) if line.startswith(b"\\."))
            raise self.refuse(self.line + at, f"a row of {table.name} starts with \\. but is "
                                              "not the end-of-data line")
        if table.name.startswith("_yoyo_"):
            for at, line in enumerate(lines):
                self._bookkeeping(table.name, line.split(b"\t"), self.line + at)
        return len(lines)

    def _bookkeeping(self, table: str, fields: list[bytes], line: int) -> None:
        """yoyo's rows may record only the manifest's migrations (each once, with yoyo's hash)."""
        if table == "_yoyo_version":
            if fields[0] != str(YOYO_SCHEMA_VERSION).encode():
                raise self.refuse(line, f"_yoyo_version records schema version {_show(fields[0])}; "
                                        f"the dump's yoyo tables are version "
                                        f"{YOYO_SCHEMA_VERSION}")
            return
        at = 0 if table == "_yoyo_migration" else 1  # (migration_hash, migration_id) from here
        digest, ident = fields[at], fields[at + 1]
        name = ident.decode("utf-8", "replace")
        if name not in self.migrations:
            raise self.refuse(line, f"{table} names migration {_show(ident)}, which the manifest "
                                    "does not list")
        if digest != self.migrations[name]:
            raise self.refuse(line, f"{table} records {name} with hash {_show(digest)}, "
                                    "which is not yoyo's hash of that migration")
        if table == "_yoyo_migration":
            if name in self.recorded:
                raise self.refuse(line, f"_yoyo_migration records {name} twice")
            self.recorded.add(name)
