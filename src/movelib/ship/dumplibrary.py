"""The dump's side of a restore's comparison (:mod:`movelib.ship.comparison`): its library
versions, current pointers and drafts' documents, gathered as the check reads its rows, sorted
by slug (on disk beyond a run), and given back as the comparison reads the target's rows.

Each draft is kept as the sha256 of its document's COPY text (what the server's digest of the
target's draft is compared with) and the content hash movelib computes of the document (a
version is decided "the same" without a recomputation only where its draft hashes to its
library row's hash): both taken in the check, before any connection (:mod:`.drafts`: for a
large dump, in a second process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import groupby, islice
from operator import itemgetter
from typing import Any

from ..base.spill import Record, SortedSpill
from ..seed.drift import Movement
from .copytext import PLAIN_NUMBERS, NotANumber, copy_keys, copy_text, plain_number
from .drafts import Columns, Draft, Helper, drafts
from .dumpformat import Table

# One library version as the comparison reads it, on either side: slug, version, stored hash,
# the sha256 of its draft's document as COPY writes it (or a marker no sha256 is: NO_DRAFT on
# the dump's side, None on the target's where the row is not its document's projection), its
# slug's current version (None: retired), and whether the row's draft is not its own (the
# target's library check, comparison.Invariants; False here)
Row = tuple[str, int, str, bytes | None, int | None, bool]
NO_DRAFT = b"no single draft in the dump"
ROWS_PER_BLOCK = 250  # library versions the comparison takes at a time

_KEY, _VERSION, _HASH, _KEY_VERSION = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(0, 1)
_CONTENT = itemgetter(3)


@dataclass
class DumpLibrary:
    """The dump's library versions, current pointers and drafts' documents, gathered as its
    rows are checked and kept sorted by slug on disk: (slug's UTF-8, version, stored hash),
    (slug's UTF-8, version) and (slug's UTF-8, version, sha256 of the document's COPY text,
    the document's content hash: :func:`side_by_side` compares them with the target's)."""

    versions: SortedSpill = field(default_factory=SortedSpill)
    current: SortedSpill = field(default_factory=SortedSpill)
    documents: SortedSpill = field(default_factory=SortedSpill)
    # a dump from before migration 0002 has no pointers: each movement's latest version is
    # current (as 0002 sets them)
    derive_current: bool = False
    helper: Helper | None = None  # hashes the drafts of a large dump in a second process
    # what the check read of the drafts' table a second process hashes (:meth:`finish`)
    _hashed: tuple[Table, int, bytes, int] | None = field(default=None, init=False, repr=False)

    def wants(self, table: Table) -> bool:
        return (table.name in ("movement_library", "movement_current")
                or (table.name == "movement_staging" and "document" in table.columns))

    def feed(self, table: Table, blocks: Iterator[bytes],
             line: Callable[[], int] = lambda: 0, start: int | None = None) -> None:
        """Consume ``blocks`` (whole lines of ``table``'s COPY data, which starts ``start``
        bytes into the SQL; ``line()`` the number of the block's first line). A version that is
        not a number as movelib writes it (:func:`plain_number`) raises :class:`NotANumber`
        (for the drafts a second process hashes, in :meth:`finish`)."""
        columns = table.columns
        slug, version = columns.index("slug"), columns.index("version")
        if table.name == "movement_staging":
            self._drafts(table, (slug, version, columns.index("document")), blocks, line, start)
            return
        digest = columns.index("content_hash") if table.name == "movement_library" else -1
        into = self.versions if digest >= 0 else self.current
        # each block a column at a time (C loops): a row split up to the fields it needs, a
        # hash near its end split from the right (the check counted every row's fields)
        split = max(slug, version) + 1
        keys_of, numbers_of = itemgetter(slug), itemgetter(version)
        for block in blocks:
            rows = block.split(b"\n")
            rows.pop()
            if not rows:
                continue
            heads = [row.split(b"\t", split) for row in rows]
            keys = copy_keys(list(map(keys_of, heads)))
            versions = _versions(table, keys, list(map(numbers_of, heads)), line())
            if digest >= 0:
                hashes = [row.rsplit(b"\t", len(columns) - digest)[1] for row in rows]
                joined = b"\n".join(hashes)
                extra = (joined.decode().split("\n") if joined.isascii() and b"\\" not in joined
                         else list(map(copy_text, hashes)))
                into.extend(list(zip(keys, versions, extra, strict=True)))
            else:
                into.extend(list(zip(keys, versions, strict=True)))

    def _drafts(self, table: Table, columns: Columns, blocks: Iterator[bytes],
                line: Callable[[], int], start: int | None) -> None:
        """The drafts' digests: here, block by block, or (a :attr:`helper`, and where the data
        starts) in a second process, this one hashing the bytes it reads for :meth:`finish`."""
        if self.helper is None or start is None:
            for block in blocks:
                self._absorb(table, drafts(block, columns), line())
            return
        self.helper.start(start, columns)
        read, size, first = sha256(), 0, None
        for block in blocks:
            read.update(block)
            size += len(block)
            first = line() if first is None else first
        self._hashed = (table, size, read.digest(), first or 0)

    def finish(self) -> None:
        """Once the whole file was checked: the drafts a second process hashed."""
        if self.helper is None or self._hashed is None:
            return
        table, size, digest, first = self._hashed
        # sorted while the second process may still be at work (the comparison would sort them)
        self.versions.sort()
        self.current.sort()
        with closing(self.helper.results(size, digest)) as results:  # its file closed on a refusal
            for found in results:
                self._absorb(table, found, first)
                first += len(found)

    def _absorb(self, table: Table, found: list[Draft], line: int) -> None:
        """``found`` drafts (whose first is on ``line``), their versions held to numbers."""
        if found:
            keys = list(map(_KEY, found))
            versions = _versions(table, keys, list(map(_VERSION, found)), line)
            self.documents.extend(list(zip(keys, versions, map(_HASH, found), map(_CONTENT, found),
                                           strict=True)))

    def movements(self) -> Iterator[Movement]:
        """The dump's library, slug by slug in byte order (the order of the merge)."""
        for key, rows, now in self._slugs():
            yield Movement(key.decode("utf-8"), {version: digest for _, version, digest in rows},
                           now)

    def blocks(self) -> Iterator[list[Row]]:
        """The dump's library as the comparison reads the target's (:data:`Row`), in slug
        (UTF-8) then version order, about :data:`ROWS_PER_BLOCK` rows a block, each block ending
        with its last slug's last version. Where the three tables line up (each version's one
        draft, each slug's pointer: the common case) a block is made column by column, else
        slug by slug."""
        versions, documents, current = (Lookahead(iter(self.versions)),
                                        Lookahead(iter(self.documents)),
                                        Lookahead(iter(self.current)))
        while block := versions.take(ROWS_PER_BLOCK):
            last = block[-1][0]
            while (following := versions.peek()) is not None and following[0] == last:
                block += versions.take(1)  # the slug's other versions: a block ends with a slug
            yield (self._lined_up(block, documents, current)
                   or self._by_slug(block, documents, current))

    def _lined_up(self, block: list[Record], documents: Lookahead, current: Lookahead,
                  ) -> list[Row] | None:
        """``block``'s rows when the next drafts are its versions' (one each) and the next
        pointers its slugs' (one each); else None, and nothing taken."""
        if self.derive_current:
            return None
        keys = list(map(_KEY_VERSION, block))
        if len(dict.fromkeys(keys)) != len(keys):  # a version twice (a forged dump): slug by slug
            return None
        slugs = list(map(_KEY, block))
        distinct = list(dict.fromkeys(slugs))
        drafts, pointers = documents.take(len(keys)), current.take(len(distinct))
        draft, pointer = documents.peek(), current.peek()
        if (list(map(_KEY_VERSION, drafts)) != keys or list(map(_KEY, pointers)) != distinct
                or (draft is not None and draft[:2] == keys[-1])  # a second draft
                or (pointer is not None and pointer[0] == distinct[-1])):  # a second pointer
            documents.push(drafts)
            current.push(pointers)
            return None
        hashes = list(map(_HASH, block))
        drafted = [draft[2] if draft[3] == digest else NO_DRAFT
                   for draft, digest in zip(drafts, hashes, strict=True)]
        if len(distinct) == len(slugs):
            nows: Iterable[int] = map(_VERSION, pointers)
        else:
            now = dict(pointers)
            nows = [now[slug] for slug in slugs]
        count = len(block)
        return list(zip(map(bytes.decode, slugs), map(_VERSION, block), hashes, drafted, nows,
                        [False] * count, strict=True))

    def _by_slug(self, block: list[Record], documents: Lookahead, current: Lookahead,
                 ) -> list[Row]:
        """``block``'s rows, slug by slug: the drafts and pointers of its slugs taken (and those
        of slugs the library lacks passed over)."""
        rows: list[Row] = []
        for key, group in groupby(block, key=_KEY):
            found = list(group)
            digests: dict[int, bytes] = {}
            hashes: dict[int, str] = {}
            while (document := documents.peek()) is not None and document[0] <= key:
                documents.take(1)
                if document[0] == key:
                    version = document[1]
                    digests[version] = NO_DRAFT if version in digests else document[2]
                    hashes[version] = document[3]
            now = None
            while (pointer := current.peek()) is not None and pointer[0] <= key:
                current.take(1)
                if pointer[0] == key:
                    now = pointer[1]  # the last one, as a dict kept it
            if self.derive_current:
                now = max(version for _, version, _ in found)
            slug = key.decode("utf-8")
            rows += [(slug, version, digest, _drafted(digests, hashes, version, digest), now,
                      False) for _, version, digest in found]
        return rows

    def _slugs(self) -> Iterator[tuple[bytes, list[Any], int | None]]:
        """Each slug's UTF-8, its library records and its current version."""
        current = iter(self.current)
        pointer = next(current, None)
        for key, group in groupby(self.versions, key=itemgetter(0)):
            rows = list(group)
            while pointer is not None and pointer[0] < key:
                pointer = next(current, None)
            now = None
            while pointer is not None and pointer[0] == key:  # the last one, as a dict kept it
                now, pointer = pointer[1], next(current, None)
            if self.derive_current:
                now = max(row[1] for row in rows)
            yield key, rows, now


def _versions(table: Table, keys: list[bytes], numbers: list[bytes], line: int) -> list[int]:
    """``numbers`` (one a row, the first on ``line``) as ints, each a number as movelib writes
    it (:func:`plain_number`), else :class:`NotANumber` for the first that is not."""
    if not PLAIN_NUMBERS.fullmatch(b"\n".join(numbers)):
        at = next(i for i, number in enumerate(numbers) if not plain_number(number))
        raise NotANumber(table.name, keys[at].decode("utf-8", "replace"), numbers[at],
                         line=line + at)
    return list(map(int, numbers))


def _drafted(digests: dict[int, bytes], hashes: dict[int, str], version: int,
             content_hash: str) -> bytes:
    """The document digest a version is compared by: its one draft's, when that draft's
    document hashes to the version's library hash; else :data:`NO_DRAFT` (recomputed)."""
    digest = digests.get(version, NO_DRAFT)
    return digest if hashes.get(version) == content_hash else NO_DRAFT


class Lookahead:
    """An iterator whose next items can be looked at, and taken ones given back."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._back: list[Any] = []

    def take(self, count: int) -> list[Any]:
        if not self._back:
            return list(islice(self._items, count))
        taken, self._back = self._back[:count], self._back[count:]
        if len(taken) < count:
            taken += islice(self._items, count - len(taken))
        return taken

    def peek(self) -> Any:
        """The next item (None at the end), not taken."""
        if not self._back:
            self._back = list(islice(self._items, 1))
        return self._back[0] if self._back else None

    def push(self, items: list[Any]) -> None:
        """Give ``items`` back: they come next, in their order."""
        self._back = items + self._back
