"""Reading and validating a movement data file, with no database.

Every problem is reported, not only the first: JSON syntax errors with line and column,
duplicate keys, NaN/Infinity, schema violations with the record index, its slug and a JSON
pointer, and duplicate slugs.

A valid file is read as a stream, twice at most, and never held in memory: the first pass
(orjson on batches of a couple of megabytes, jsonschema-rs per batch) keeps only each record's
slug and content hash; the publish pass streams the records again and checks that the file's
sha256 has not changed. Only
when the fast pass finds a problem is the file parsed whole by the standard library and checked
with the reference ``jsonschema``, for the precise report (line, column, pointer, expectation).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError, DataFileError

MAX_REPORTED = 200


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    index: int | None = None
    slug: str | None = None
    pointer: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        if self.index is not None:
            where += f": record {self.index}"
            if self.slug:
                where += f" ({self.slug if self.slug.isprintable() else repr(self.slug)})"
        if self.pointer is not None:
            where += f" at {self.pointer or '/'}"
        return f"{where}: {self.message}"


@dataclass(slots=True)
class Movement:
    index: int
    slug: str
    document: dict[str, Any]
    canonical: str  # the document as canonical JSON (sorted keys, no spaces)
    content_hash: str  # sha256 of ``canonical``


@dataclass(slots=True)
class Entry:
    """What is kept of a record between passes (not frozen: one per record, built fast)."""

    index: int
    slug: str
    content_hash: str


Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


@dataclass(frozen=True)
class Dataset:
    path: Path
    display_name: str
    sha256: str
    entries: list[Entry]

    def __len__(self) -> int:
        return len(self.entries)

    def batches(self) -> Iterator[tuple[int, list[dict[str, Any]], list[bytes]]]:
        """Stream the records again, a batch at a time: (index of the first record, records,
        their canonical JSON as UTF-8). Raises :class:`DataFileError` at the end if the file
        is not the one that was validated (its sha256 differs): a caller writing from the
        stream must not commit before the iteration finished."""
        batches = _Batches.of_file(self.path)
        first = 0
        try:
            for batch in batches:
                yield first, batch, [canonical_bytes(record) for record in batch]
                first += len(batch)
            digest: str | None = batches.digest.hexdigest()
        except (_NeedsReport, orjson.JSONEncodeError):
            digest = None
        if digest != self.sha256:
            raise DataFileError(
                f"{self.display_name} changed while it was being seeded; nothing was written"
            )

    def movements(self) -> Iterator[Movement]:
        """Stream the records again, one :class:`Movement` at a time (see :meth:`batches`)."""
        for first, records, canonical in self.batches():
            for index, (record, text) in enumerate(zip(records, canonical, strict=True), first):
                yield Movement(index, record["slug"], record, text.decode("utf-8"),
                               content_hash(text))

    def documents(self, slugs: set[str]) -> dict[str, dict[str, Any]]:
        return {m.slug: m.document for m in self.movements() if m.slug in slugs}


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 text unescaped: what the content hash is taken of.

    orjson writes exactly what ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` writes for strings, lists and objects (the only values a valid
    movement holds; a test keeps the two in step), four times faster.
    """
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def canonical_json(document: Mapping[str, Any]) -> str:
    """:func:`canonical_bytes` as text."""
    try:
        return canonical_bytes(document).decode("utf-8")
    except TypeError:  # integers beyond 64 bits: never in a valid movement
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(canonical: str | bytes) -> str:
    return hashlib.sha256(canonical.encode("utf-8") if isinstance(canonical, str)
                          else canonical).hexdigest()


class _Marked(dict[str, Any]):
    """A JSON object that carried the same key twice (the keys are kept for the report)."""

    duplicate_keys: list[str]


class _NonFinite:
    def __init__(self, token: str) -> None:
        self.token = token


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    dupes: list[str] = []
    for key, value in pairs:
        if key in obj:
            dupes.append(key)
        obj[key] = value
    if dupes:
        marked = _Marked(obj)
        marked.duplicate_keys = dupes
        return marked
    return obj


def _walk(value: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """Every (pointer, value) below ``value``, iteratively (files may nest deep)."""
    stack = [(pointer, value)]
    while stack:
        ptr, node = stack.pop()
        yield ptr, node
        if isinstance(node, dict):
            for key, child in node.items():
                stack.append((f"{ptr}/{_escape(key)}", child))
        elif isinstance(node, list):
            for i, child in enumerate(node):
                stack.append((f"{ptr}/{i}", child))


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _record_of(pointer: str, document: Any) -> tuple[int | None, str | None]:
    parts = pointer.split("/")
    if len(parts) < 2 or not parts[1].isdigit() or not isinstance(document, list):
        return None, None
    index = int(parts[1])
    record = document[index] if index < len(document) else None
    slug = record.get("slug") if isinstance(record, dict) else None
    return index, slug if isinstance(slug, str) else None


@lru_cache(maxsize=8)
def _validator(schema_path: Path, mtime: float) -> Any:
    from jsonschema import Draft202012Validator

    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the schema {schema_path}: {exc}") from None
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def parse_json(raw: bytes, name: str) -> Any:
    """Strict JSON: UTF-8 without BOM, no duplicate keys, no NaN or Infinity."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise DataFileError(
            f"{name}:1:1: the file starts with a UTF-8 byte order mark; save it as UTF-8 without BOM"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataFileError(
            f"{name}:{line}:{column}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start})"
        ) from None
    if not text.strip():
        raise DataFileError(f"{name}: the file is empty; expected a JSON array of movements")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        raise DataFileError(
            f"{name}:{exc.lineno}:{exc.colno}: JSON syntax error: {exc.msg}"
        ) from None
    except RecursionError:
        raise DataFileError(
            f"{name}: JSON nested too deeply to read; a movement file is an array of flat records"
        ) from None


def check_document(document: Any, name: str, schema_path: Path) -> list[Problem]:
    """Every problem of a parsed data file, in file order."""
    problems: list[Problem] = []
    for pointer, node in _walk(document):
        index, slug = _record_of(pointer, document)
        if isinstance(node, _Marked):
            for key in node.duplicate_keys:
                problems.append(Problem(name, f"duplicate key {key!r} in one object",
                                        index, slug, pointer))
        elif isinstance(node, _NonFinite):
            problems.append(Problem(name, f"{node.token} is not valid JSON; expected a finite "
                                    "number or a string", index, slug, pointer))
        elif isinstance(node, str) and "\x00" in node:
            problems.append(Problem(name, "holds \\u0000 (NUL), which PostgreSQL text cannot "
                                    "store; remove it", index, slug, pointer))
    if problems:
        return sorted(problems, key=_order)

    validator = _validator(schema_path, schema_path.stat().st_mtime)
    for error in validator.iter_errors(document):
        pointer = "".join(f"/{_escape(str(p))}" for p in error.absolute_path)
        index, slug = _record_of(pointer, document)
        problems.append(Problem(name, _explain(error), index, slug, pointer))
    if not problems:
        # The schema's patterns are ECMA-262 regular expressions; the reference validator runs
        # them with Python's re, where "$" also matches before a final newline ("squat\n").
        # jsonschema-rs follows ECMA-262: where the two disagree, the stricter verdict stands.
        problems += _ecma_problems(document, name, schema_path)

    if isinstance(document, list):
        first_seen: dict[str, int] = {}
        for i, record in enumerate(document):
            slug = record.get("slug") if isinstance(record, dict) else None
            if not isinstance(slug, str):
                continue
            if slug in first_seen:
                problems.append(Problem(name, f"duplicate slug {slug!r} (first used by record "
                                        f"{first_seen[slug]})", i, slug, f"/{i}/slug"))
            else:
                first_seen[slug] = i
    return sorted(problems, key=_order)


def _ecma_problems(document: Any, name: str, schema_path: Path) -> list[Problem]:
    import jsonschema_rs

    try:
        validator = jsonschema_rs.validator_for(json.loads(schema_path.read_text(encoding="utf-8")))
    except (ValueError, jsonschema_rs.ValidationError):
        return []  # the reference validator reads the schema and says what is wrong with it
    problems = []
    for error in validator.iter_errors(document):
        pointer = "".join(f"/{_escape(str(p))}" for p in error.instance_path)
        index, slug = _record_of(pointer, document)
        problems.append(Problem(name, str(error.message)[:300], index, slug, pointer))
    return problems


def _order(p: Problem) -> tuple[int, str]:
    return (-1 if p.index is None else p.index, p.pointer or "")


def _explain(error: Any) -> str:
    validator = error.validator
    if validator == "additionalProperties":
        return f"{error.message}; remove the field or fix its name"
    if validator == "required":
        return f"{error.message}"
    if validator == "type":
        return f"expected {error.validator_value}, got {json.dumps(error.instance)[:80]}"
    if validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{json.dumps(error.instance)[:80]} is not one of: {allowed}"
    if validator == "pattern":
        return (f"{json.dumps(error.instance)[:80]} does not match {error.validator_value} "
                "(lower-case words joined by hyphens)")
    return str(error.message)[:300]


class _NeedsReport(Exception):
    """The fast pass met something wrong: the precise (slow) pass will say what."""


BATCH_BYTES = 1 << 21
_BOUNDARY = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_WHITESPACE = b" \t\r\n"
MAX_RETRIES = 4


def _delimiters(text: bytes) -> int:
    """How many string delimiters (unescaped double quotes) ``text`` holds: twice its strings."""
    quotes = text.count(b'"')
    if b"\\" in text:
        quotes -= _ESCAPE.findall(text).count(b'\\"')
    return quotes


def _blocks(path: Path, digest: Any = None, start: int = 0, stop: int | None = None,
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


class _Batches:
    """The records of a JSON array, parsed by orjson a couple of megabytes at a time.

    Each batch is cut after a ``},{`` between records; as a JSON value cannot end early, a batch
    that parses as an array proves that its cut fell between two top-level records (a cut
    inside a string or a nested value cannot parse), and a batch that does not parse is retried
    with more of the file. orjson keeps the last of two equal keys, so duplicates are found by
    counting: every string of the text must be in the parsed records (:func:`_delimiters` on
    both sides, see :meth:`finish`).

    Anything unexpected raises :class:`_NeedsReport`: the careful pass then reports it.
    """

    def __init__(self, blocks: Iterator[bytes], digest: Any = None) -> None:
        self.blocks = blocks
        self.digest = digest  # what hashes the blocks, when the caller wants it back
        self.raw_strings = 0

    @classmethod
    def of_file(cls, path: Path) -> _Batches:
        digest = hashlib.sha256()
        return cls(_blocks(path, digest), digest)

    def _read(self) -> bytes:
        return next(self.blocks, b"")

    def _more(self, buf: bytes) -> tuple[bytes, bool]:
        """``buf`` and the next block; whether the text has ended."""
        block = self._read()
        return buf + block, not block

    def __iter__(self) -> Iterator[list[Any]]:
        buf = self._read().lstrip(_WHITESPACE)
        if not buf.startswith(b"["):
            raise _NeedsReport("not an array")
        buf, eof, final, failures = buf[1:], False, False, 0
        while True:
            while not eof and len(buf) < BATCH_BYTES:
                buf, eof = self._more(buf)
            last = None
            if not final:
                for last in _BOUNDARY.finditer(buf):  # noqa: B007 (the last one)
                    pass
            if last is None and not eof:  # one record longer than a batch: read on
                buf, eof = self._more(buf)
                continue
            if last is None:
                final = True
                text, rest = buf.rstrip(_WHITESPACE), b""
                if not text.endswith(b"]"):
                    raise _NeedsReport("the array is not closed")
                text = text[:-1]
            else:
                text, rest = buf[: last.start() + 1], buf[last.end() - 1:]
            try:
                batch = orjson.loads(b"[" + text + b"]")
            except orjson.JSONDecodeError:
                failures += 1
                if final or failures > MAX_RETRIES:
                    raise _NeedsReport("syntax") from None
                buf, eof = self._more(buf)  # the cut may have fallen inside a record
                final = eof
                continue
            failures = 0
            if b"\\u0000" in text:  # NUL, which PostgreSQL text cannot hold (or an escaped "\\")
                raise _NeedsReport("\\u0000")
            self.raw_strings += _delimiters(text)
            yield batch
            if final:
                return
            buf = rest

    def finish(self, parsed_strings: int) -> None:
        """Raise unless every string of the text was in the parsed records (no duplicate key
        was dropped)."""
        if parsed_strings != self.raw_strings:
            raise _NeedsReport("duplicate keys")


# Top-level keywords the batch validator may apply to a part of the array; with any other
# (minItems, contains...) only the whole file can be judged, by the careful pass.
_BATCHABLE = {"$schema", "$id", "$defs", "$comment", "title", "description", "type", "items"}


@lru_cache(maxsize=8)
def _fast_validator(schema_path: Path, mtime: float) -> Any:
    """jsonschema-rs for a batch of records: ~100x the pure-Python speed."""
    import jsonschema_rs

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    if not isinstance(schema, dict) or not set(schema) <= _BATCHABLE:
        return None
    return jsonschema_rs.validator_for(schema)


PARALLEL_MIN_BYTES = 16 << 20  # smaller files are read by one process


def _scan(batches: _Batches, validator: Any, hashes: bool, first: int = 0,
          progress: Progress | None = None) -> list[Entry]:
    """Validate every batch; the entries (slugs unique within this scan)."""
    entries: list[Entry] = []
    seen: set[str] = set()
    strings = 0
    for batch in batches:
        if not validator.is_valid(batch):
            raise _NeedsReport("schema")
        index = first + len(entries)
        slugs = [record["slug"] for record in batch]
        seen.update(slugs)
        if len(seen) != len(entries) + len(slugs):
            raise _NeedsReport("duplicate slug")
        if hashes:
            canonical = [canonical_bytes(record) for record in batch]
            strings += _delimiters(b"".join(canonical))
            digests = [content_hash(text) for text in canonical]
        else:
            strings += _delimiters(orjson.dumps(batch))
            digests = [""] * len(batch)
        entries.extend(map(Entry, range(index, index + len(batch)), slugs, digests))
        if progress:
            progress("validate", index + len(batch), None)
    batches.finish(strings)
    return entries


def _fast_pass(path: Path, schema_path: Path, progress: Progress | None,
               hashes: bool = True) -> tuple[str, list[Entry]]:
    validator = _fast_validator(schema_path, schema_path.stat().st_mtime)
    if validator is None:
        raise _NeedsReport("the schema constrains the whole array")
    collecting = gc.isenabled()
    gc.disable()  # millions of short-lived objects, no cycles: the collector only slows us down
    try:
        if (path.stat().st_size >= PARALLEL_MIN_BYTES and sys.platform == "linux"
                and (os.cpu_count() or 1) > 1):
            halves = _two_process_pass(path, validator, hashes, progress)
            if halves is not None:
                return halves
        batches = _Batches.of_file(path)
        entries = _scan(batches, validator, hashes, progress=progress)
        return batches.digest.hexdigest(), entries
    finally:
        if collecting:
            gc.enable()


def _two_process_pass(path: Path, validator: Any, hashes: bool,
                      progress: Progress | None) -> tuple[str, list[Entry]] | None:
    """Both halves of a large file at once: the second in a forked child process.

    The file is cut after a ``},{`` near its middle. The first half is read here as an array
    closed at the cut: if it parses, the cut was between two records (see :class:`_Batches`)
    and the child's half starts at a record. ``None`` when the halves cannot be used (the cut
    fell inside a record, or the child failed): the caller then reads the file in one pass.
    """
    import multiprocessing

    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(size // 2)
        found = _BOUNDARY.search(handle.read(1 << 20))
    if found is None:
        return None
    cut, resume = size // 2 + found.start() + 1, size // 2 + found.end() - 1
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_scan_in_child, daemon=True,
                            args=(sender, path, resume, validator, hashes))
    child.start()
    sender.close()
    try:
        digest = hashlib.sha256()
        head = _scan(_Batches(_blocks(path, digest, 0, cut, after=b"]")), validator, hashes,
                     progress=progress)
        for _ in _blocks(path, digest, cut):  # the child's half still counts in the hash
            pass
        tail: list[tuple[str, str]] | None = receiver.recv()
    except (_NeedsReport, EOFError, OSError):
        tail = None
    finally:
        receiver.close()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
    if tail is None:
        return None
    first = len(head)
    entries = head + [Entry(first + i, slug, digest_) for i, (slug, digest_) in enumerate(tail)]
    if len({entry.slug for entry in entries}) != len(entries):
        raise _NeedsReport("duplicate slug")
    if progress:
        progress("validate", len(entries), None)
    return digest.hexdigest(), entries


def _scan_in_child(sender: Any, path: Path, resume: int, validator: Any, hashes: bool) -> None:
    """The forked half: its (slug, hash) pairs, or None for anything the parent must redo."""
    gc.disable()
    result: list[tuple[str, str]] | None
    try:
        entries = _scan(_Batches(_blocks(path, None, resume, before=b"[")), validator, hashes)
        result = [(entry.slug, entry.content_hash) for entry in entries]
    except Exception:  # the parent reads the file again and says what is wrong
        result = None
    sender.send(result)
    sender.close()


def load_movements(path: Path, schema_path: Path, display_name: str | None = None,
                   progress: Progress | None = None, *, hashes: bool = True) -> Dataset:
    """Validate ``path``; raise :class:`DataFileError` listing every problem.

    ``hashes=False`` skips the content hashes (left empty) when only the verdict is wanted.
    """
    name = display_name or _display(path)
    try:
        with path.open("rb") as handle:
            if handle.read(3) == b"\xef\xbb\xbf":
                raise DataFileError(f"{name}:1:1: the file starts with a UTF-8 byte order mark; "
                                    "save it as UTF-8 without BOM")
    except FileNotFoundError:
        raise DataFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataFileError(f"{name}: is a directory, not a data file") from None
    except OSError as exc:
        raise DataFileError(f"{name}: cannot read it ({exc.strerror})") from None
    try:
        digest, entries = _fast_pass(path, schema_path, progress, hashes)
    except (_NeedsReport, KeyError, TypeError, orjson.JSONEncodeError):
        digest, entries = _careful_pass(path.read_bytes(), name, schema_path)
    return Dataset(path, name, digest, entries)


def _careful_pass(raw: bytes, name: str, schema_path: Path) -> tuple[str, list[Entry]]:
    """The reference parser and validator, on the whole file: the precise report of what the
    fast pass rejected (or, where the two disagree, the verdict)."""
    document = parse_json(raw, name)
    problems = check_document(document, name, schema_path)
    if not problems:
        entries = [Entry(i, r["slug"], content_hash(canonical_json(r)))
                   for i, r in enumerate(document)]
        return hashlib.sha256(raw).hexdigest(), entries
    shown = [str(p) for p in problems[:MAX_REPORTED]]
    more = len(problems) - len(shown)
    summary = f"{name}: {len(problems)} problem(s); nothing was written"
    if more:
        shown.append(f"... and {more} more")
    raise DataFileError("\n".join([*shown, summary]), problems)


def _display(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


