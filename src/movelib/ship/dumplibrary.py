"""The dump's side of a restore's comparison (:mod:`movelib.ship.comparison`): its library
versions, current pointers and drafts' documents, gathered as the check reads its rows, sorted
by slug (on disk beyond a run), and given back as the comparison reads the target's rows.

Each draft is kept as the sha256 of its document's COPY text (what the server's digest of the
target's draft is compared with) and the content hash movelib computes of the document (a
version is decided "the same" without a recomputation only where its draft hashes to its
library row's hash): both taken here, in the check, before any connection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import chain, groupby, islice
from operator import itemgetter
from typing import Any

import orjson

from ..base.spill import Record, SortedSpill
from ..seed.drift import Movement
from ..source.datafile.canonical import canonical_bytes
from .dumpformat import NotANumber, Table, copy_text, plain_number

_NUMBERS = re.compile(rb"[1-9][0-9]*(?:\n[1-9][0-9]*)*")  # plain_number's, one a line

# One library version as the comparison reads it, on either side: slug, version, stored hash,
# the sha256 of its draft's document as COPY writes it (or a marker no sha256 is: NO_DRAFT on
# the dump's side, None on the target's where the row is not its document's projection), its
# slug's current version (None: retired), and whether the row's draft is not its own (the
# target's library check, comparison.Invariants; False here)
Row = tuple[str, int, str, bytes | None, int | None, bool]
NO_DRAFT = b"no single draft in the dump"
ROWS_PER_BLOCK = 250  # library versions the comparison takes at a time

_KEY, _VERSION, _HASH, _KEY_VERSION = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(0, 1)


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

    def wants(self, table: Table) -> bool:
        return (table.name in ("movement_library", "movement_current")
                or (table.name == "movement_staging" and "document" in table.columns))

    def feed(self, table: Table, blocks: Iterator[bytes],
             line: Callable[[], int] = lambda: 0) -> None:
        """Consume ``blocks`` (whole lines of ``table``'s COPY data; ``line()`` the number of
        the block's first line). A version that is not a number as movelib writes it
        (:func:`plain_number`) raises :class:`NotANumber`."""
        columns = table.columns
        slug, version = columns.index("slug"), columns.index("version")
        digest = columns.index("content_hash") if table.name == "movement_library" else -1
        document = columns.index("document") if table.name == "movement_staging" else -1
        into = (self.versions if digest >= 0 else self.documents if document >= 0
                else self.current)
        # each block a column at a time (C loops): a row split up to the fields it needs, a
        # hash near its end split from the right (the check counted every row's fields)
        split = max(slug, version, document) + 1
        keys_of, numbers_of, documents_of = (itemgetter(slug), itemgetter(version),
                                             itemgetter(document))
        for block in blocks:
            rows = block.split(b"\n")
            rows.pop()
            if not rows:
                continue
            heads = [row.split(b"\t", split) for row in rows]
            keys = list(map(keys_of, heads))
            joined = b"".join(keys)
            if b"\\" in joined or not joined.isascii():  # as the merge keys it: UTF-8, unescaped
                keys = [copy_text(key).encode("utf-8") if b"\\" in key or not key.isascii()
                        else key for key in keys]
            numbers = list(map(numbers_of, heads))
            if not _NUMBERS.fullmatch(b"\n".join(numbers)):
                at = next(i for i, number in enumerate(numbers) if not plain_number(number))
                raise NotANumber(table.name, keys[at].decode("utf-8", "replace"), numbers[at],
                                 line=line() + at)
            versions = list(map(int, numbers))
            extra: list[str] | list[bytes] | None = None
            if digest >= 0:
                hashes = [row.rsplit(b"\t", len(columns) - digest)[1] for row in rows]
                joined = b"\n".join(hashes)
                extra = (joined.decode().split("\n") if joined.isascii() and b"\\" not in joined
                         else list(map(copy_text, hashes)))
            elif document >= 0:
                fields = list(map(documents_of, heads))
                into.extend(list(zip(keys, versions, [sha256(f).digest() for f in fields],
                                     map(_content_hash, fields), strict=True)))
                continue
            into.extend(list(zip(keys, versions, extra, strict=True)) if extra is not None
                        else list(zip(keys, versions, strict=True)))

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


def _content_hash(field: bytes) -> str:
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
