"""What is kept of every record of a data file between passes, compactly: a million records of
30-character slugs in about 90 MB (the slugs' UTF-8 in one buffer, their ends in an array, raw
32-byte hashes in another buffer, and the buffers' growth slack; no object per record)."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, chain, islice
from typing import Any, NamedTuple, overload

HASH_BYTES = 32  # a sha256 digest
Row = tuple[Any, ...]


def _utf8(slug: str) -> bytes:
    return slug.encode("utf-8", "surrogatepass")  # a lone surrogate from the reference parser


def _position(sort_key: bytes) -> int:
    """Where the record of a :meth:`Slugs.sort_keys` key is in the file."""
    return int.from_bytes(sort_key[-4:], sys.byteorder)


class Entry(NamedTuple):
    """One record as :class:`Entries` gives it back: its position, slug and content hash."""

    position: int
    slug: str
    content_hash: str  # sha256 of the canonical JSON, in hex ("" when hashes were skipped)


class Slugs(Sequence[str]):
    """The slugs of a file, in file order: one buffer of their UTF-8 and an array of where each
    ends (about 30 bytes a slug where a list of ``str`` takes 80)."""

    __slots__ = ("_blob", "_ends")

    def __init__(self, slugs: Iterable[str] = ()) -> None:
        self._blob = bytearray()
        self._ends = array("Q")
        self.extend(slugs)

    def extend(self, slugs: Iterable[str]) -> None:
        if isinstance(slugs, Slugs):  # another buffer: its ends move by this one's length
            base = len(self._blob)
            self._blob += slugs._blob
            self._ends.extend(end + base for end in slugs._ends)
            return
        encoded = [_utf8(slug) for slug in slugs]
        ends = accumulate(map(len, encoded), initial=len(self._blob))
        next(ends)  # where the slugs before these end
        self._ends.extend(ends)
        self._blob += b"".join(encoded)

    def append(self, slug: str) -> None:
        self._blob += _utf8(slug)
        self._ends.append(len(self._blob))

    def key(self, index: int) -> bytes:
        """The UTF-8 of slug ``index``: its byte order is code-point order (and PostgreSQL's
        ``ORDER BY convert_to(slug, 'UTF8')``, :func:`movelib.database.tables.by_slug`)."""
        return bytes(self._blob[self._ends[index - 1] if index else 0:self._ends[index]])

    def sort_keys(self) -> list[bytes]:
        """Every slug's :meth:`key` followed by NUL (which no slug holds: NUL is refused in a
        data file) and its index as 4 native bytes, in file order: sorted, these are the slugs
        in byte order with where each came from, and no other object per slug."""
        ends = self._ends
        index = memoryview(array("I", range(len(ends))).tobytes())
        with memoryview(self._blob) as blob:
            return [b"".join((blob[start:end], b"\0", index[4 * i:4 * i + 4])) for i, (start, end)
                    in enumerate(zip(chain((0,), ends), ends, strict=False))]

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self._ends)
        if not 0 <= index < len(self._ends):
            raise IndexError("slug index out of range")
        return self.key(index).decode("utf-8", "surrogatepass")

    def __len__(self) -> int:
        return len(self._ends)

    def __iter__(self) -> Iterator[str]:
        blob, start = self._blob, 0
        for end in self._ends:
            yield blob[start:end].decode("utf-8", "surrogatepass")
            start = end

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Slugs):
            return NotImplemented
        return self._ends == other._ends and self._blob == other._blob

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __getstate__(self) -> tuple[bytes, bytes]:  # to and from the validation's child process
        return bytes(self._blob), self._ends.tobytes()

    def __setstate__(self, state: tuple[bytes, bytes]) -> None:
        self._blob, self._ends = bytearray(state[0]), array("Q")
        self._ends.frombytes(state[1])


class Entries:
    """Every record's slug and raw content hash, in file order.

    Indexed, iterated and compared like a sequence of :class:`Entry`; the hot paths use
    :attr:`slugs`, :meth:`content_hash`, :meth:`by_slug` and :meth:`join` directly.
    """

    __slots__ = ("_by_slug", "_duplicate", "_hashes", "slugs")

    def __init__(self, slugs: Iterable[str] = (), hashes: bytes | bytearray = b"") -> None:
        self.slugs = slugs if isinstance(slugs, Slugs) else Slugs(slugs)
        self._hashes = bytearray(hashes)  # 32 bytes a record, or empty: hashes were skipped
        self._by_slug: array[int] | None = None
        self._duplicate: str | None = None
        if self._hashes and len(self._hashes) != HASH_BYTES * len(self.slugs):
            raise ValueError("one 32-byte content hash per slug")

    def add(self, slugs: list[str], digests: list[bytes] | None) -> None:
        """Append a batch: its slugs and, unless hashes are skipped, their raw sha256 digests."""
        self.slugs.extend(slugs)
        if digests is not None:
            self._hashes += b"".join(digests)
        self._by_slug = self._duplicate = None

    def extend(self, other: Entries) -> None:
        self.slugs.extend(other.slugs)
        self._hashes += other._hashes
        self._by_slug = self._duplicate = None

    @property
    def raw_hashes(self) -> bytes:
        return bytes(self._hashes)

    def content_hash(self, index: int) -> str:
        """The content hash of record ``index`` in hex ("" when hashes were skipped)."""
        return self._hashes[HASH_BYTES * index:HASH_BYTES * (index + 1)].hex()

    def by_slug(self) -> array[int]:
        """The record indexes in byte order of their slugs (computed once, 4 bytes a record):
        the order :func:`movelib.database.tables.by_slug` gives the same slugs in PostgreSQL."""
        if self._by_slug is None:
            keys = self.slugs.sort_keys()
            keys.sort()
            order = array("I", map(_position, keys))
            pairs = zip(keys, islice(keys, 1, None), strict=False)  # neighbours in order
            self._duplicate = next((a[:-5].decode("utf-8", "surrogatepass")
                                    for a, b in pairs if a[:-5] == b[:-5]), None)
            self._by_slug = order
        return self._by_slug

    def duplicate(self) -> str | None:
        """A slug that two records share, or ``None``: found while sorting (:meth:`by_slug`),
        which the seed needs anyway; a set of a million slugs would cost more memory."""
        self.by_slug()
        return self._duplicate

    def join(self, rows: Iterable[Row]) -> Iterator[tuple[int | None, Row]]:
        """Each of ``rows`` (slug first, in the byte order of the slugs' UTF-8:
        :func:`movelib.database.tables.by_slug`) with the index of the record of the same slug, or
        ``None`` when the file has none: a merge join, no dictionary of either side. Raises
        ``RuntimeError`` if the rows are not in that order."""
        key, order = self.slugs.key, self.by_slug()
        position, count, previous = 0, len(order), None
        for row in rows:
            slug = _utf8(row[0])
            if previous is not None and slug <= previous:
                raise RuntimeError(f"rows out of slug order: {row[0]!r}")
            previous = slug
            while position < count and key(order[position]) < slug:
                position += 1
            if position < count and key(order[position]) == slug:
                yield order[position], row
                position += 1
            else:
                yield None, row

    def __len__(self) -> int:
        return len(self.slugs)

    def __getitem__(self, index: int) -> Entry:
        slug = self.slugs[index]  # IndexError when out of range
        if index < 0:
            index += len(self.slugs)
        return Entry(index, slug, self.content_hash(index))

    def __iter__(self) -> Iterator[Entry]:
        for index, slug in enumerate(self.slugs):
            yield Entry(index, slug, self.content_hash(index))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entries):
            return NotImplemented
        return self.slugs == other.slugs and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"<Entries of {len(self)} records>"
