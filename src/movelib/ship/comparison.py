"""The target's library beside the dump's, slug by slug: what a restore's preview and merge
plan are made of (:mod:`movelib.ship.preview`, :mod:`movelib.ship.merge_plan`): the pairs of
movements that differ, and counts of those that do not (:class:`Same`).

What the pairs must say (SECURITY.md): a version of the target is the dump's when its content
hash, recomputed from the document the target holds, is the dump's, and its library row is that
document's projection (a row edited behind the triggers' back never is). Recomputing every hash
(the canonical text built in SQL) was half of a merge of ten versions into 100k. So the server
is first asked for less: each version's stored hash, and the sha256 of its draft's document as
COPY writes it (jsonb's text, each backslash doubled), where the row is that document's
projection. The dump's side holds the same digest of each of its drafts' document field, taken
in the check before any connection (:class:`DumpLibrary`).

A version is decided "the same" at once when its row is its document's projection, the
document's text is byte for byte the dump's draft's (so the same document, and the same
recomputed hash), its stored hash is the dump's, and the dump's draft hashes to the dump's
hash (computed here, in the check before any connection, by movelib's own canonical form, for
documents of a movement's shape, whose SQL form is held to it). The recomputation would then
give the dump's hash too, whatever was edited on either side: a dump of a database edited
behind its triggers, restored into that database, is not taken for the same.

A movement is decided at once when every version is, and its current version is the dump's.
Every other movement has the hashes of its undecided versions recomputed, after the stream, for
those versions only, and its pair is given after the counts of the rest (in slug order among
themselves). Where the target
predates the recomputation (migration 0004) or the dump holds no drafts' documents, every hash
is recomputed in the one stream (:func:`target_movements`).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import chain, groupby
from operator import itemgetter
from typing import IO, Any, NamedTuple

import orjson
import psycopg

from ..base.spill import SortedSpill, dump_block, load_blocks
from ..database import db
from ..database.tables import NOT_ITS_DOCUMENT, by_slug, table_exists
from ..seed.drift import Movement, library_movements, merge, merge_keyed, movements
from ..source.datafile.canonical import canonical_bytes
from .dumpformat import NotANumber, Table, copy_text, plain_number

_NUMBERS = re.compile(rb"[1-9][0-9]*(?:\n[1-9][0-9]*)*")  # plain_number's, one a line

# Before migration 0004 the stored hashes are all there is; before the versions migration (no
# movement_current) no movement is current.
_STORED = f"""
SELECT l.slug, l.version, l.content_hash, c.version
  FROM movement_library l LEFT JOIN movement_current c ON c.slug = l.slug
 ORDER BY {by_slug("l.slug")}, l.version
"""
_STORED_BEFORE_VERSIONS = f"""
SELECT slug, version, content_hash, NULL::int FROM movement_library
 ORDER BY {by_slug()}, version
"""


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

    def documented(self) -> Iterator[tuple[bytes, Movement, Versions]]:
        """Each movement as :meth:`movements` gives it, with its slug's UTF-8 and its versions
        as :func:`side_by_side` compares them: (version, hash, its draft's document digest; a
        version without exactly one draft gets :data:`NO_DRAFT`)."""
        documents = iter(self.documents)
        document = next(documents, None)
        for key, rows, now in self._slugs():
            digests: dict[int, bytes] = {}
            hashes: dict[int, str] = {}
            while document is not None and document[0] < key:
                document = next(documents, None)
            while document is not None and document[0] == key:
                version = document[1]
                digests[version] = NO_DRAFT if version in digests else document[2]
                hashes[version] = document[3]
                document = next(documents, None)
            if len(rows) == 1:  # most movements have one version: no loop to build
                _, version, digest = rows[0]
                yield key, Movement(key.decode("utf-8"), {version: digest}, now), \
                    ((version, digest, _drafted(digests, hashes, version, digest)),)
                continue
            yield key, Movement(key.decode("utf-8"), {v: digest for _, v, digest in rows}, now), \
                tuple((v, digest, _drafted(digests, hashes, v, digest)) for _, v, digest in rows)

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


@contextmanager
def target_movements(conn: psycopg.Connection) -> Iterator[Iterator[Movement]]:
    """The target's library (in the caller's transaction), slug by slug in byte order; nothing
    when it has none."""
    if not table_exists(conn, "movement_library"):
        yield iter(())
    elif table_exists(conn, "movement_library_content"):
        with library_movements(conn) as found:
            yield found
    else:  # a database before 0004: the stored hashes are all there is
        query = (_STORED if table_exists(conn, "movement_current")
                 else _STORED_BEFORE_VERSIONS)
        with db.stream(conn, query) as rows:
            yield movements(rows)


Pair = tuple[Movement | None, Movement | None]


class Same(NamedTuple):
    """Movements the same on both sides, counted: what the comparison gives for them instead of
    their pairs (nothing of them is written or shown)."""

    movements: int
    versions: int


SAME_PER_COUNT = 1_000  # movements a Same counts at most (progress moves at least as often)
RECOMPUTED_PER_QUERY = 5_000  # versions whose hash one query recomputes

# The row's projection test is movement_library_content's (migration 0004), the digest is of
# jsonb's text as COPY writes it: without a control character (jsonb escapes them), a backslash
# is all COPY escapes
_DOCUMENTS = f"""
SELECT l.slug, l.version, l.content_hash,
       CASE WHEN (l.slug, l.name, l.classification, l.equipment, l.primary_muscles,
                  l.secondary_muscles, l.level, l.instructions, l.aliases, l.laterality, l.force,
                  l.mechanic, l.coaching_cues)
                 IS NOT DISTINCT FROM
                 (d.slug, d.name, d.classification, d.equipment, d.primary_muscles,
                  d.secondary_muscles, d.level, d.instructions, coalesce(d.aliases, '{{}}'),
                  d.laterality, d.force, d.mechanic, coalesce(d.coaching_cues, '{{}}'))
            THEN sha256(convert_to(replace(s.document::text, '\\', '\\\\'), 'UTF8')) END,
       c.version
  FROM movement_library l
  LEFT JOIN movement_staging s ON s.id = l.staging_id
  LEFT JOIN LATERAL jsonb_to_record(s.document) AS d (slug text, name text, classification text,
       equipment text[], primary_muscles text[], secondary_muscles text[], level text,
       instructions text[], aliases text[], laterality text, force text, mechanic text,
       coaching_cues text[]) ON true
  LEFT JOIN movement_current c ON c.slug = l.slug
 ORDER BY {by_slug("l.slug")}, l.version
"""
_RECOMPUTED = f"""
SELECT v.slug, v.version, coalesce(v.content_hash, '{NOT_ITS_DOCUMENT}')
  FROM movement_library_content v
  JOIN unnest(%s::text[], %s::integer[]) AS k (slug, version)
    ON k.slug = v.slug AND k.version = v.version
"""

# A slug's versions as the fast comparison holds them, in version order: (version, stored hash,
# document digest); the same on both sides is the same movement. A version that cannot be
# decided so has a digest no sha256 is, one for each side (never equal).
Versions = tuple[tuple[int, str, bytes], ...]
NO_DRAFT = b"no single draft in the dump"
NOT_A_PROJECTION = b"not its document's projection"
# One slug of the target: slug, versions, current version
Held = tuple[str, Versions, int | None]
# One slug of the dump: its movement (the hashes it holds) and its versions
Dumped = tuple[Movement, Versions]


@contextmanager
def side_by_side(conn: psycopg.Connection, dump: DumpLibrary,
                 ) -> Iterator[Iterator[Pair | Same]]:
    """``with side_by_side(conn, dump) as pairs:`` the target's movements on ``conn`` (in the
    caller's transaction) beside the dump's, each side None where it lacks the slug, every
    version's hash as the recomputation gives it; movements decided the same at once are
    counted (:class:`Same`) instead of paired."""
    if dump.documents.count == 0 or not table_exists(conn, "movement_library_content"):
        with target_movements(conn) as here:
            yield merge(here, dump.movements())
        return
    with tempfile.TemporaryFile(prefix="movelib-differ-") as differing:
        yield _pairs(conn, dump, differing)


def _pairs(conn: psycopg.Connection, dump: DumpLibrary, differing: IO[bytes],
           ) -> Iterator[Pair | Same]:
    movements = versions = 0
    with db.stream(conn, _DOCUMENTS) as found:
        for held, dumped in _merge(_held(found), dump.documented()):
            if (held is not None and dumped is not None and held[1] == dumped[1]
                    and held[2] == dumped[0].current):  # the same: the common case
                movements += 1
                versions += len(held[1])
                if movements == SAME_PER_COUNT:
                    yield Same(movements, versions)
                    movements = versions = 0
            else:
                dump_block((held, None if dumped is None else (tuple(dumped[0]), dumped[1])),
                           differing)
    if movements:
        yield Same(movements, versions)
    differing.seek(0)
    yield from _recomputed(conn, _read(differing))


def _held(found: Iterable[tuple[Any, ...]]) -> Iterator[tuple[bytes, Held]]:
    """The target's rows, slug by slug (the slug's UTF-8 with it)."""
    for slug, group in groupby(found, key=itemgetter(0)):
        rows = list(group)
        if len(rows) == 1:  # most movements have one version: no loop to build
            _, version, stored, digest, current = rows[0]
            yield slug.encode("utf-8", "surrogatepass"), (
                slug, ((version, stored, digest or NOT_A_PROJECTION),), current)
            continue
        yield slug.encode("utf-8", "surrogatepass"), (slug, tuple(
            (version, stored, digest or NOT_A_PROJECTION) for _, version, stored, digest, _ in rows
        ), rows[-1][4])  # the slug's current version, on each of its rows


def _merge(here: Iterator[tuple[bytes, Held]], there: Iterator[tuple[bytes, Movement, Versions]],
           ) -> Iterator[tuple[Held | None, Dumped | None]]:
    """The two sides by slug, both in byte order."""
    return merge_keyed(here, ((key, (movement, versions)) for key, movement, versions in there))


def _read(handle: IO[bytes]) -> Iterator[tuple[Held | None, Dumped | None]]:
    for held, dumped in load_blocks(handle):
        yield held, None if dumped is None else (Movement(*dumped[0]), dumped[1])


def _recomputed(conn: psycopg.Connection, differing: Iterator[tuple[Held | None, Dumped | None]],
                ) -> Iterator[Pair]:
    """The pairs of the movements that differ: each version of the target whose stored hash
    and document digest are not the dump's has its hash recomputed (a few thousand a query)."""
    while True:
        chunk: list[tuple[Held | None, Dumped | None, dict[int, str]]] = []
        keys: list[tuple[str, int]] = []
        for held, dumped in differing:
            theirs = {v: (digest, document) for v, digest, document in dumped[1]} if dumped else {}
            decided = {} if held is None else {
                v: stored for v, stored, document in held[1] if theirs.get(v) == (stored, document)}
            chunk.append((held, dumped, decided))
            if held is not None:
                keys += [(held[0], v) for v, _, _ in held[1] if v not in decided]
            if len(keys) >= RECOMPUTED_PER_QUERY:
                break
        if not chunk:
            return
        hashes = recompute(conn, keys) if keys else {}
        for held, dumped, decided in chunk:
            ours = None if held is None else Movement(held[0], {
                v: decided[v] if v in decided else hashes[(held[0], v)] for v, _, _ in held[1]},
                held[2])
            yield ours, None if dumped is None else dumped[0]


def recompute(conn: psycopg.Connection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The target's ``keys`` (slug, version) with each hash recomputed from its document
    (:data:`NOT_ITS_DOCUMENT` for a row that is not its document's projection)."""
    return {(slug, version): digest for slug, version, digest in db.rows(
        conn, _RECOMPUTED, [k[0] for k in keys], [k[1] for k in keys])}
