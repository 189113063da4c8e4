"""A restore into a database that already holds the movement tables: what
:mod:`movelib.ship.merge_plan` decided, written into the tables that exist.

Production is the application's database: its foreign keys, views, grants, policies and indexes
hang on the movement tables, and its rows hold the movement ids, so nothing here drops or
re-creates a table. Every statement takes ROW EXCLUSIVE locks only (INSERT, UPDATE, DELETE,
COPY): readers are never blocked, and they see the old library until the restore's one COMMIT,
then the new one. Rows are written with INSERT ... SELECT over arrays of the dump's fields (no
temporary table: a least-privilege role may not create one), joined to the target's own ids by
natural key; into tables without a row, COPYed as a load does (:func:`merge_plan.everything`).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

import psycopg
from psycopg import sql

from ..base.errors import ArtifactError
from ..base.spill import SortedSpill
from ..base.text import shown_path
from ..database.tables import RETIRED
from ..source.datafile import Progress
from .copytext import NotANumber, copy_field, plain_number
from .dumpformat import Table
from .dumpreader import WRITING, CheckedDump, Rows, RowsRead, read_dump
from .merge_plan import Changes, Key

Checked = TypeVar("Checked")
BATCH_ROWS = 2_000  # rows per INSERT
MAX_NEEDLES = 64  # versions a merge finds in the dump by searching its blocks
_PLAIN = re.compile(r"[a-z0-9][a-z0-9-]*")  # a slug COPY writes as it is


class _Columns:
    """A dumped table's columns as the target types them."""

    def __init__(self, conn: psycopg.Connection, table: Table) -> None:
        types: dict[str, str] = dict(conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table.name,)).fetchall())
        self.table = table
        self.names = [c for c in table.columns if c != "id"]
        self.types = {c: str(types[c]) for c in self.names}
        self.index = {c: i for i, c in enumerate(table.columns)}


def _number(raw: bytes, table: Table, slug: str, what: str = "version") -> int:
    """A version or id as movelib writes it (:func:`plain_number`); else :class:`NotANumber`
    for a field the check before any connection does not parse, or ``ValueError`` (the file
    changed since) for one it does: the library's and the pointers' versions."""
    if plain_number(raw):
        return int(raw)
    if what == "version" and table.name in ("movement_library", "movement_current"):
        raise ValueError(table.name)
    raise NotANumber(table.name, slug, raw, what)


def _fields(line: bytes) -> list[str | None]:
    return [copy_field(f) for f in line.split(b"\t")]


class _Writer:
    """The dump's rows of one merge, written in batches on the restore's connection."""

    def __init__(self, conn: psycopg.Connection, found: Changes) -> None:
        self.conn = conn
        self.found = found
        self.seed_runs: dict[str, list[str | None]] = {}  # the dump's, by its id
        self.run_columns: _Columns | None = None
        self.mapped: dict[str, str] = {}  # the dump's seed run id -> the target's
        self.current: dict[str, tuple[int, str | None]] = {}  # the dump's pointers: version, since
        # the added versions as COPY writes a slug that needs no escaping, and its version: most
        # lines are decided on their bytes
        self.added_raw = {(s.encode(), str(v).encode()) for s, v in found.added}
        self.retired_raw = {s.encode() for s in found.retired}
        self.idle = not (found.everything or found.added or found.retired)
        self.copied: list[Table] = []  # a bulk merge's tables, COPYed with the dump's ids

    def _wanted(self, key: Key) -> bool:
        return self.found.everything or key in self.found.added

    def rows(self, part: Rows) -> None:
        table = part.table
        columns = _Columns(self.conn, table) if table.name.startswith("movement_") else None
        if columns is None:  # yoyo's rows: the target keeps its own bookkeeping
            for _ in part.blocks:
                pass
            return
        if self.found.bulk:  # tables without a row: the dump's rows as they are, as a load
            with self.conn.cursor().copy(f"COPY {table.spec} FROM STDIN") as copy:
                for block in part.blocks:
                    copy.write(block)
            self.copied.append(table)
            return
        if table.name == "movement_seed_run":
            self.run_columns = columns
            for block in part.blocks:
                for line in block.split(b"\n")[:-1]:
                    values = _fields(line)
                    self.seed_runs[str(values[columns.index["id"]])] = values
            return
        slug_at, version_at = columns.index["slug"], columns.index["version"]
        action_at = columns.index.get("action")
        since_at = columns.index.get("since", 0)
        fields = max(slug_at, version_at, action_at or 0, since_at) + 1  # what a line is decided on
        if self.idle and table.name != "movement_current":  # nothing of this table is written
            for _ in part.blocks:
                pass
            return
        # an audit chain's order is its ids' order: the rows are written in the order of the
        # dump's ids (sorted on disk), which a dump's table order need not be
        ordered = SortedSpill() if table.name == "movement_audit_log" else None
        needles = self._needles(table.name)
        batch: list[list[str | None]] = []
        for block in part.blocks:
            for line in (block.split(b"\n")[:-1] if needles is None else _lines_with(block, needles)):
                raw = line.split(b"\t", fields)
                if (not self.found.everything and b"\\" not in raw[slug_at]
                        and (raw[slug_at], raw[version_at]) not in self.added_raw
                        and raw[slug_at] not in self.retired_raw
                        and table.name != "movement_current"):
                    continue  # neither added nor retired: the common case, on its bytes
                slug = copy_field(raw[slug_at]) or ""
                if table.name == "movement_current":
                    if self.found.everything or slug in self.found.pointed or slug in self.found.moved:
                        self.current[slug] = (_number(raw[version_at], table, slug),
                                              copy_field(raw[since_at]))
                    continue
                key = (slug, _number(raw[version_at], table, slug))
                retire = (action_at is not None and slug in self.found.retired
                          and raw[action_at] == RETIRED.encode())
                if not (self._wanted(key) or retire):
                    continue
                values = _fields(line)
                if len(values) != len(table.columns):
                    raise IndexError(table.name)
                if ordered is not None:
                    ordered.add((_number(raw[0], table, slug, "id"), *values))
                    continue
                batch.append(values)
                if len(batch) >= BATCH_ROWS:
                    self._insert(columns, batch)
                    batch = []
        for record in ordered or ():
            batch.append(list(record[1:]))
            if len(batch) >= BATCH_ROWS:
                self._insert(columns, batch)
                batch = []
        if batch:
            self._insert(columns, batch)

    def _needles(self, table: str) -> list[bytes] | None:
        """What the lines of ``table`` this merge wants hold, as COPY writes them, for a search
        of each block (a few versions among a million lines: bytes.find, not a loop over
        lines); None when every line must be looked at: many wanted, or a slug COPY escapes."""
        found = self.found
        if not gathers(found):
            return None
        if table == "movement_current":
            return [b"\n" + s.encode() + b"\t" for s in {*found.moved, *found.pointed}]
        needles = [b"\t%s\t%d\t" % (s.encode(), v) for s, v in sorted(found.added)]
        if table == "movement_audit_log":
            needles += [b"\t" + s.encode() + b"\t" for s in sorted(found.retired)]
        return needles

    def gather(self, table: Table, blocks: Iterator[bytes]) -> list[bytes]:
        """What :meth:`rows` needs of ``table`` (when the merge :func:`gathers`): its lines
        this merge writes, kept to be written once the whole file is read."""
        needles = self._needles(table.name)
        if (needles is None or not table.name.startswith("movement_")
                or (self.idle and table.name != "movement_current")):
            deque(blocks, maxlen=0)
            return []
        if table.name == "movement_seed_run":  # a run or two: every one, as rows() reads them
            return list(blocks)
        return [b"".join(line + b"\n" for block in blocks for line in _lines_with(block, needles))]

    def _seed_run(self, dump_id: str) -> str:
        """The target's id of the dump's seed run ``dump_id``: the same run where the target
        holds it (every column equal), else inserted."""
        if dump_id in self.mapped:
            return self.mapped[dump_id]
        columns = self.run_columns
        values = self.seed_runs.get(dump_id)
        if columns is None or values is None:
            raise psycopg.errors.ForeignKeyViolation(f"seed run {dump_id} is not in the dump")
        names = columns.names
        cast = [sql.SQL("%s::{}").format(sql.SQL(columns.types[c])) for c in names]
        params = [values[columns.index[c]] for c in names]
        row = self.conn.execute(sql.SQL(
            "SELECT id FROM movement_seed_run WHERE ({cols}) IS NOT DISTINCT FROM ({vals}) "
            "ORDER BY id LIMIT 1").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, names)),
            vals=sql.SQL(", ").join(cast)), params).fetchone()
        if row is None:
            row = self.conn.execute(sql.SQL(
                "INSERT INTO movement_seed_run ({cols}) VALUES ({vals}) RETURNING id").format(
                cols=sql.SQL(", ").join(map(sql.Identifier, names)),
                vals=sql.SQL(", ").join(cast)), params).fetchone()
        assert row is not None
        self.mapped[dump_id] = str(row[0])
        return self.mapped[dump_id]

    def _insert(self, columns: _Columns, batch: list[list[str | None]]) -> None:
        run_at = columns.index.get("seed_run_id")
        if run_at is not None:
            for values in batch:
                if values[run_at] is not None:
                    values[run_at] = self._seed_run(str(values[run_at]))
        table, names = columns.table.name, columns.names
        join: sql.Composable = sql.SQL("")
        exprs: list[sql.Composable] = []
        for c in names:
            if table == "movement_library" and c == "staging_id":
                exprs.append(sql.SQL("s.id"))
                join = sql.SQL(" JOIN movement_staging s ON s.slug = d.slug "
                               "AND s.version = d.version::integer")
            else:
                exprs.append(sql.SQL("d.{}::{}").format(sql.Identifier(c), sql.SQL(columns.types[c])))
        guard: sql.Composable = sql.SQL("")
        if table == "movement_audit_log":  # a RETIRED row the target already has is not repeated
            guard = sql.SQL(
                " WHERE NOT (d.action = {retired} AND EXISTS (SELECT FROM movement_audit_log a "
                "WHERE a.slug = d.slug AND a.version = d.version::integer AND a.action = {retired}))"
            ).format(retired=sql.Literal(RETIRED))
        query = sql.SQL(
            "INSERT INTO {table} ({cols}) SELECT {exprs} FROM unnest({arrays}) WITH ORDINALITY "
            "AS d ({cols}, n){join}{guard} ORDER BY d.n").format(
            table=sql.Identifier(table), cols=sql.SQL(", ").join(map(sql.Identifier, names)),
            exprs=sql.SQL(", ").join(exprs),
            arrays=sql.SQL(", ").join(sql.SQL("%b::text[]") for _ in names),
            join=join, guard=guard)
        self.conn.execute(query, [[values[columns.index[c]] for values in batch] for c in names])

    def pointers(self) -> None:
        """The current pointers the dump sets, once its library rows are in: moved forward
        (UPDATE), else inserted, each with the dump's ``since``."""
        found = self.found
        if found.bulk:  # COPYed with the rows (ids as the dump's); the sequences follow them
            for table in self.copied:
                if "id" in table.columns:
                    self.conn.execute(sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({name}, 'id'), max(id)) FROM {table} "
                        "HAVING max(id) IS NOT NULL").format(name=sql.Literal(table.name),
                                                             table=sql.Identifier(table.name)))
            return
        if found.everything:
            self._point("INSERT", {s: v for s, (v, _) in self.current.items()})
            return
        self._point("UPDATE", found.moved)
        self._point("INSERT", found.pointed)

    def _point(self, how: str, versions: dict[str, int]) -> None:
        slugs = list(versions)
        for start in range(0, len(slugs), BATCH_ROWS * 5):
            part = slugs[start:start + BATCH_ROWS * 5]
            params = (part, [versions[s] for s in part],
                      [self.current.get(s, (0, None))[1] for s in part])
            source = ("unnest(%b::text[], %b::integer[], %b::text[]::timestamptz[]) AS d (slug, version, "
                      "since) JOIN movement_library l ON l.slug = d.slug AND l.version = d.version")
            if how == "UPDATE":
                self.conn.execute(
                    "UPDATE movement_current c SET version = l.version, library_id = l.id, "
                    "since = coalesce(d.since, l.published_at) FROM " + source
                    + " WHERE c.slug = d.slug", params)
            else:
                self.conn.execute(
                    "INSERT INTO movement_current (slug, version, library_id, since) SELECT "
                    "d.slug, l.version, l.id, coalesce(d.since, l.published_at) FROM " + source,
                    params)


def gathers(found: Changes) -> bool:
    """The merge adds and retires a few versions, of slugs COPY writes as they are: their rows
    are found by searching the dump's blocks, gathered from the whole file, then written."""
    slugs = {s for s, _ in found.added} | found.retired | set(found.moved) | set(found.pointed)
    return (not found.everything and len(found.added) + len(found.retired) <= MAX_NEEDLES
            and all(_PLAIN.fullmatch(s) for s in slugs))


FEW_NEEDLES = 3  # searched one by one; more, as one regular expression


def _lines_with(block: bytes, needles: list[bytes]) -> list[bytes]:
    """The lines of ``block`` (whole lines) that hold one of ``needles``, in their order. A
    needle may begin with the line break before its line (a first column), holds no other, and
    ends with a tab.

    A few needles are found by ``bytes.find``, one scan of the block each; more by one scan for
    them all (a regular expression of the needles, alternated): over a 256 MB dump, 10 needles
    0.39 s against 0.74 s, 64 needles 0.94 s against 4.5 s, 1 needle 0.22 s against 0.05 s."""
    # a needle that begins with a line break finds the block's first line by its start (the
    # block is searched as it is: no copy of it with a line break in front)
    starts: set[int] = {0} if any(n.startswith(b"\n") and block.startswith(n[1:])
                                  for n in needles) else set()
    if len(needles) <= FEW_NEEDLES:
        for needle in needles:
            at = block.find(needle)
            while at >= 0:
                starts.add(block.rfind(b"\n", 0, at + 1) + 1)
                at = block.find(needle, at + 1)
    else:  # no match can hide another's line: a needle ends with a tab, never takes a line break
        for match in _alternation(tuple(needles)).finditer(block):
            starts.add(block.rfind(b"\n", 0, match.start() + 1) + 1)
    return [block[start:block.index(b"\n", start)] for start in sorted(starts)]


@lru_cache(maxsize=8)
def _alternation(needles: tuple[bytes, ...]) -> re.Pattern[bytes]:
    return re.compile(b"|".join(re.escape(needle) for needle in needles))


def _remove(conn: psycopg.Connection, found: Changes) -> None:
    """The target's rows that go: cleared pointers, then removed versions (and any draft of a
    version the dump adds): library row, audit rows, draft. Declared for this transaction only
    (migration 0007's guards), and recorded by the restore before it commits."""
    if found.cleared:
        conn.execute("DELETE FROM movement_current WHERE slug = ANY(%s::text[])", (found.cleared,))
    keys = [*found.removed, *(found.added - set(found.removed))]
    if not keys:
        return
    conn.execute("SELECT set_config('movelib.restore_removes', pg_current_xact_id()::text, true)")
    params = ([k[0] for k in keys], [k[1] for k in keys])
    for table in ("movement_library", "movement_audit_log", "movement_staging"):
        conn.execute(sql.SQL(
            "DELETE FROM {} t USING unnest(%s::text[], %s::integer[]) AS r (slug, version) "
            "WHERE t.slug = r.slug AND t.version = r.version").format(sql.Identifier(table)), params)
    conn.execute("SELECT set_config('movelib.restore_removes', '', true)")


def apply_merge(conn: psycopg.Connection, dump: CheckedDump, found: Changes,
                progress: Progress | None = None,
                beside: Callable[[], Checked] | None = None) -> Checked | None:
    """Write ``found`` on ``conn`` (the restore's transaction): removals, then the dump's rows
    that differ, read from the file once more (the file's sha256 compared before the last
    part; a bulk merge checks each line again as a load does; the reading said to
    ``progress``), then the pointers.

    A merge that :func:`gathers` reads the whole file before it writes, and runs ``beside``
    meanwhile on a second thread (a check of the target on ``conn``, which this thread does not
    use until it returns): the server checks while this process reads. Its result is returned
    (None when nothing ran beside)."""
    path, layout, manifest = dump.path, dump.layout, dump.manifest
    writer = _Writer(conn, found)
    read = RowsRead(progress, WRITING, manifest.size)
    checked: Checked | None = None
    # its sha256 is compared at the end; a bulk merge checks each line again as a load does
    parts = read_dump(path, layout, manifest, recheck=found.bulk, extents=dump.extents)
    try:
        if beside is not None and gathers(found):
            with ThreadPoolExecutor(1, thread_name_prefix="movelib-check") as pool:
                checking = pool.submit(beside)  # waited for, whatever the reading raises
                gathered = [(part.table, writer.gather(part.table, read.counted(part.blocks)))
                            for part in parts if isinstance(part, Rows)]
                checked = checking.result()
            _remove(conn, found)
            for table, data in gathered:
                writer.rows(Rows(table, iter(data)))
        else:
            _remove(conn, found)
            for part in parts:
                if isinstance(part, Rows):
                    writer.rows(Rows(part.table, read.counted(part.blocks)))
    except NotANumber as exc:  # a field the first read does not look at
        raise ArtifactError(f"{shown_path(path)}: {exc}; refusing it, nothing was written") from None
    except (IndexError, ValueError):  # a row not as the first read checked it
        raise ArtifactError(f"{shown_path(path)} changed while it was read (a row is not as its "
                            "check found it); refusing it, nothing was written") from None
    read.finish()
    writer.pointers()
    return checked
