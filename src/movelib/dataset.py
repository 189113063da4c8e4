"""Reading and validating a movement data file, with no database.

Every problem is reported, not only the first: JSON syntax errors with line and column,
duplicate keys, NaN/Infinity, schema violations with the record index, its slug and a JSON
pointer, and duplicate slugs.

A valid file is read as a stream, twice at most, and never held in memory: the first pass
(ijson's C parser, jsonschema-rs per record) keeps only each record's slug and content hash; the
publish pass streams the records again and checks that the file's sha256 has not changed. Only
when the fast pass finds a problem is the file parsed whole by the standard library and checked
with the reference ``jsonschema``, for the precise report (line, column, pointer, expectation).
"""

from __future__ import annotations

import gc
import hashlib
import json
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
                where += f" ({self.slug})"
        if self.pointer is not None:
            where += f" at {self.pointer or '/'}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Movement:
    index: int
    slug: str
    document: dict[str, Any]
    canonical: str  # the document as canonical JSON (sorted keys, no spaces)
    content_hash: str  # sha256 of ``canonical``


@dataclass(frozen=True)
class Entry:
    """What is kept of a record between passes."""

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

    def movements(self) -> Iterator[Movement]:
        """Stream the records again; raise if the file changed since it was validated."""
        reader = _HashingReader(self.path)
        try:
            for index, record in enumerate(_stream_records(reader)):
                canonical = canonical_json(record)
                yield Movement(index, record["slug"], record, canonical, content_hash(canonical))
            digest = reader.hexdigest()
        finally:
            reader.close()
        if digest != self.sha256:
            raise DataFileError(
                f"{self.display_name} changed while it was being seeded; nothing was written"
            )

    def documents(self, slugs: set[str]) -> dict[str, dict[str, Any]]:
        return {m.slug: m.document for m in self.movements() if m.slug in slugs}


def canonical_json(document: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 text unescaped: what the content hash is taken of.

    orjson writes exactly what ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` writes for strings, lists and objects (the only values a valid
    movement holds; a test keeps the two in step), four times faster.
    """
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except TypeError:  # integers beyond 64 bits: never in a valid movement
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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
    if problems:
        return sorted(problems, key=_order)

    validator = _validator(schema_path, schema_path.stat().st_mtime)
    for error in validator.iter_errors(document):
        pointer = "".join(f"/{_escape(str(p))}" for p in error.absolute_path)
        index, slug = _record_of(pointer, document)
        problems.append(Problem(name, _explain(error), index, slug, pointer))

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


class _HashingReader:
    """A binary file that hashes every byte read through it."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("rb")
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data

    def hexdigest(self) -> str:
        while self.read(1 << 20):  # anything after the array still counts
            pass
        return self.digest.hexdigest()

    def close(self) -> None:
        self.handle.close()


class _NeedsReport(Exception):
    """The fast pass met something wrong: the precise (slow) pass will say what."""


def _stream_records(reader: _HashingReader) -> Iterator[Any]:
    import ijson

    yield from ijson.items(reader, "item", use_float=True, map_type=_DupCheckingDict)


class _DupCheckingDict(dict[str, Any]):
    def __setitem__(self, key: str, value: Any) -> None:
        if key in self:
            raise _NeedsReport(f"duplicate key {key!r}")
        super().__setitem__(key, value)


@lru_cache(maxsize=8)
def _fast_validator(schema_path: Path, mtime: float) -> Any:
    """jsonschema-rs for one record (the schema's ``items``): ~100x the pure-Python speed."""
    import jsonschema_rs

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    item = {key: value for key, value in schema.items() if key not in ("type", "items", "$id")}
    item.update(schema["items"])
    return jsonschema_rs.validator_for(item)


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
MAX_DEPTH = 8  # a movement file nests 3 deep (array, record, list of strings)


def _shallow(path: Path) -> bool:
    """Cheap guard before the streaming parser, whose cost grows with the square of the
    nesting depth: counting every bracket (those inside strings too, which can only make
    the answer more cautious), does the file nest at most MAX_DEPTH deep?"""
    with path.open("rb") as handle:
        brackets = b"".join(iter(lambda: handle.read(1 << 22).translate(None, _NOT_BRACKETS), b""))
    for _ in range(MAX_DEPTH):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return True
        if shorter == brackets:
            return False
        brackets = shorter
    return False


def _fast_pass(path: Path, schema_path: Path, progress: Progress | None) -> tuple[str, list[Entry]]:
    validator = _fast_validator(schema_path, schema_path.stat().st_mtime)
    if not _shallow(path):
        raise _NeedsReport("deep or unbalanced nesting")
    reader = _HashingReader(path)
    entries: list[Entry] = []
    seen: set[str] = set()
    collecting = gc.isenabled()
    gc.disable()  # millions of short-lived objects, no cycles: the collector only slows us down
    try:
        head = reader.handle.read(64).lstrip()
        reader.handle.seek(0)
        if not head.startswith(b"["):
            raise _NeedsReport("not an array")
        try:
            for index, record in enumerate(_stream_records(reader)):
                if not validator.is_valid(record):
                    raise _NeedsReport(f"record {index}")
                slug = record["slug"]
                if slug in seen:
                    raise _NeedsReport(f"duplicate slug {slug}")
                seen.add(slug)
                entries.append(Entry(index, slug, content_hash(canonical_json(record))))
                if progress and index % 5000 == 4999:
                    progress("validate", index + 1, None)
        except _NeedsReport:
            raise
        except Exception as exc:
            raise _NeedsReport(str(exc)) from None
        digest = reader.hexdigest()
    finally:
        reader.close()
        if collecting:
            gc.enable()
    if progress:
        progress("validate", len(entries), len(entries))
    return digest, entries


def load_movements(path: Path, schema_path: Path, display_name: str | None = None,
                   progress: Progress | None = None) -> Dataset:
    """Validate ``path``; raise :class:`DataFileError` listing every problem."""
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
        digest, entries = _fast_pass(path, schema_path, progress)
    except _NeedsReport:
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


