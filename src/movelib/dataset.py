"""Reading and validating a movement data file, with no database.

Every problem is reported, not only the first: JSON syntax errors with line and column,
duplicate keys, NaN/Infinity, schema violations with the record index, its slug and a JSON
pointer, and duplicate slugs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

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
class Dataset:
    path: Path
    display_name: str
    sha256: str
    movements: list[Movement]


def canonical_json(document: Mapping[str, Any]) -> str:
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


def load_movements(path: Path, schema_path: Path, display_name: str | None = None) -> Dataset:
    """Read, parse and validate ``path``; raise :class:`DataFileError` listing every problem."""
    name = display_name or _display(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(f"{name}: no such file") from None
    except OSError as exc:
        raise DataFileError(f"{name}: cannot read it ({exc.strerror})") from None
    document = parse_json(raw, name)
    problems = check_document(document, name, schema_path)
    if problems:
        shown = [str(p) for p in problems[:MAX_REPORTED]]
        more = len(problems) - len(shown)
        summary = f"{name}: {len(problems)} problem(s); nothing was written"
        if more:
            shown.append(f"... and {more} more")
        raise DataFileError("\n".join([*shown, summary]), problems)
    movements = []
    for index, record in enumerate(document):
        canonical = canonical_json(record)
        movements.append(Movement(index, record["slug"], record, canonical, content_hash(canonical)))
    return Dataset(path, name, hashlib.sha256(raw).hexdigest(), movements)


def _display(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def slugs(movements: Sequence[Movement]) -> list[str]:
    return [m.slug for m in movements]
