"""The precise report: the whole file read by the standard library's strict parser and checked
with the reference ``jsonschema`` (each record jsonschema-rs refuses), every problem located (line
and column, record, slug, JSON pointer). Slow and thorough; it runs only when the fast pass
raised :class:`NeedsReport`."""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...base.defaults import SHOWN
from ...base.errors import DataFileError
from ...base.text import shown
from .canonical import canonical_bytes, content_digest
from .entries import Entries
from .records import Problem
from .schema import ecma_validator, fast_validator, reference_validator, schema_mtime

MAX_REPORTED = SHOWN
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Marked(dict[str, Any]):
    """A JSON object that carried the same key twice (the keys are kept for the report)."""

    duplicate_keys: list[str]


class _NonFinite:
    def __init__(self, token: str) -> None:
        self.token = token


class _LongInteger:
    """An integer with more digits than Python converts (``sys.get_int_max_str_digits()``)."""

    def __init__(self, token: str) -> None:
        self.digits = len(token.lstrip("-"))


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


def _integer(token: str) -> int | _LongInteger:
    try:
        return int(token)
    except ValueError:
        return _LongInteger(token)


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


def refuse_bom(head: bytes, name: str) -> None:
    """:class:`DataFileError` when ``head`` (a file's first bytes) starts with a UTF-8 byte
    order mark: JSON text is UTF-8 without one (RFC 8259)."""
    if head.startswith(codecs.BOM_UTF8):
        raise DataFileError(
            f"{name}:1:1: the file starts with a UTF-8 byte order mark; save it as UTF-8 without BOM"
        )


def parse_json(raw: bytes, name: str) -> Any:
    """Strict JSON: UTF-8 without BOM, no duplicate keys, no NaN or Infinity."""
    refuse_bom(raw, name)
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
        document = json.loads(text, object_pairs_hook=_pairs, parse_constant=_NonFinite,
                              parse_int=_integer)
    except json.JSONDecodeError as exc:
        early = _ends_early(text) if not text[exc.pos:].strip() or exc.msg.startswith(
            "Unterminated string") else None
        if early is not None:
            line, column, why = early
            raise DataFileError(f"{name}:{line}:{column}: {why}") from None
        raise DataFileError(
            f"{name}:{exc.lineno}:{exc.colno}: JSON syntax error: {exc.msg}"
        ) from None
    except RecursionError:
        raise DataFileError(
            f"{name}: JSON nested too deeply to read; a movement file is an array of flat records"
        ) from None
    return document


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*("?)|[\[\]{}]', re.DOTALL)  # a string, or a bracket
_CLOSER = {"[": "]", "{": "}"}


def _line_column(text: str, pos: int) -> tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _ends_early(text: str) -> tuple[int, int, str] | None:
    """Where and why a text the parser refused at its very end was cut short: the string it
    ends inside, or the innermost list or object it leaves open (line, column, reason); None
    when nothing is left open (the parser's own message then stands)."""
    opened: list[int] = []
    for token in _TOKEN.finditer(text):
        char = token.group()
        if char[0] == '"':
            if not token.group(1):  # no closing quote before the end of the text
                line, column = _line_column(text, token.start())
                return line, column, (
                    f"the file ends inside the string that starts here (line {line}, column "
                    f'{column}): it was cut short, or the string lacks its closing "')
        elif char in _CLOSER:
            opened.append(token.start())
        elif opened and _CLOSER[text[opened.pop()]] == char:
            continue
        else:
            return None  # a stray closer: a syntax error, not a cut
    if not opened:
        return None
    body = text.rstrip()
    line, column = _line_column(text, len(body))
    bracket = text[opened[-1]]
    at_line, at_column = _line_column(text, opened[-1])
    what = ("array of movements" if len(opened) == 1 and bracket == "[" else
            "list" if bracket == "[" else "object")
    where = f"opened at line {at_line}, column {at_column}"
    if body.endswith(":"):
        return line, column, (f"the file ends where a value should follow (the {what} {where} "
                              "is not closed)")
    if what == "array of movements":
        return line, column, f"the file ends before the closing ']' of the {what} ({where})"
    return line, column, f"the file ends before the closing '{_CLOSER[bracket]}' of the {what} {where}"


def _unreadable(node: Any) -> str | None:
    """Why a value cannot be taken as it is, before any schema sees it."""
    if isinstance(node, str):
        if "\x00" in node:
            return "holds \\u0000 (NUL), which PostgreSQL text cannot store; remove it"
        if surrogate := _SURROGATE.search(node):
            return (f"holds a lone surrogate (\\u{ord(surrogate.group()):04x}), which is not "
                    "Unicode text; remove it")
    elif isinstance(node, _NonFinite):
        return f"{node.token} is not valid JSON; expected a finite number or a string"
    elif isinstance(node, _LongInteger):
        return (f"an integer of {node.digits} digits, too long to read (at most "
                f"{sys.get_int_max_str_digits()})")
    return None


def check_document(document: Any, name: str, schema_path: Path) -> list[Problem]:
    """Every problem of a parsed data file, in file order."""
    problems: list[Problem] = []
    for pointer, node in _walk(document):
        found: list[str] = []
        if isinstance(node, _Marked):
            found += [f"duplicate key {key!r} in one object" for key in node.duplicate_keys]
        if isinstance(node, dict):
            found += [f"the key {key!r} holds a lone surrogate, which is not Unicode text; "
                      "rename it" for key in node if _SURROGATE.search(key)]
        elif (why := _unreadable(node)) is not None:
            found.append(why)
        if found:  # which record it is in, only for a value that has a problem
            index, slug = _record_of(pointer, document)
            problems += [Problem(name, text, index, slug, pointer) for text in found]
    if problems:
        return sorted(problems, key=_order)

    for error in _reference_errors(document, schema_path):
        pointer = "".join(f"/{_escape(str(p))}" for p in error.absolute_path)
        index, slug = _record_of(pointer, document)
        problems.append(Problem(name, _explain(error), index, slug, pointer))
    if not problems:
        # The schema's patterns are ECMA-262 regular expressions; the reference validator runs
        # them with Python's re, where "$" also matches before a final newline ("squat\n") and
        # "\S" refuses "\x1c". jsonschema-rs follows ECMA-262, and its verdict on each record is
        # the fast pass's: a record it refuses that the reference accepts is reported with its
        # message, one it accepts is not given to the reference at all (_reference_errors).
        problems += _ecma_problems(document, name, schema_path)
    if not problems:
        problems += _shape_problems(document, name)

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


def _reference_errors(document: Any, schema_path: Path) -> list[Any]:
    """The reference validator's errors, each with its path in ``document``.

    Where the schema judges each record alone (the fast pass's jsonschema-rs can, per batch), only
    the records jsonschema-rs refuses are given to the reference validator, each on its own: that
    validator takes ~0.7 ms a record, over a minute for a 100k-record file whose one fault is a
    duplicate slug. A record jsonschema-rs accepts is accepted by the fast pass too, so the
    report judges each record as the fast pass does (ECMA-262's patterns, where Python's differ),
    whatever else is wrong in the file."""
    mtime = schema_mtime(schema_path)
    validator = reference_validator(schema_path, mtime)
    fast = fast_validator(schema_path, mtime)
    if fast is not None and isinstance(document, list):
        found = _record_by_record(validator, fast, document)
        if found is not None:
            return found
    return list(validator.iter_errors(document))


def _record_by_record(validator: Any, fast: Any, document: list[Any]) -> list[Any] | None:
    """The reference validator's errors for the records jsonschema-rs refuses; None where the
    records cannot be judged one by one: jsonschema-rs refuses the array itself, or stops at a
    value nested deeper than it reads (256 levels: ValueError), or the reference validator finds
    the one-record array wrong as an array."""
    refused: set[int] = set()
    try:
        for error in fast.iter_errors(document):
            if not error.instance_path:
                return None
            refused.add(int(error.instance_path[0]))
    except (ValueError, RecursionError):
        return None
    found = []
    for index in sorted(refused):
        for error in validator.iter_errors([document[index]]):
            if not error.path:
                return None
            error.path[0] = index  # its path in the one-record array, made the file's
            found.append(error)
    return found


def _ecma_problems(document: Any, name: str, schema_path: Path) -> list[Problem]:
    validator = ecma_validator(schema_path)
    if validator is None:
        return []  # the reference validator read the schema: the two disagree about it
    problems = []
    for error in validator.iter_errors(document):
        pointer = "".join(f"/{_escape(str(p))}" for p in error.instance_path)
        index, slug = _record_of(pointer, document)
        problems.append(Problem(name, _message(error), index, slug, pointer))
    return problems


LONG_VALUE = 80  # a string value longer than this is cut in a message, its length said


def _message(error: Any) -> str:
    """The validator's message with a long string value cut (and its length said), so the
    reason after it (``is too long``) survives the cut of the whole line."""
    text = str(error.message)
    instance = error.instance
    if isinstance(instance, str) and len(instance) > LONG_VALUE:
        cut = f"'{shown(instance[:LONG_VALUE // 2])}...' ({len(instance):,} characters)"
        for spelled in (repr(instance), json.dumps(instance, ensure_ascii=False),
                        json.dumps(instance)):
            if spelled in text:
                text = text.replace(spelled, cut)
                break
    return text[:300]


def _shape_problems(document: Any, name: str) -> list[Problem]:
    """What every later step needs even where a laxer schema than ours lets it go: an array of
    objects, each with a string slug."""
    if not isinstance(document, list):
        return [Problem(name, "expected an array of movements", pointer="")]
    return [Problem(name, 'expected an object with a string "slug"', i, None, f"/{i}")
            for i, record in enumerate(document)
            if not (isinstance(record, dict) and isinstance(record.get("slug"), str))]


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
    return _message(error)


def careful_pass(raw: bytes, name: str, schema_path: Path,
                 shown_problems: int = MAX_REPORTED) -> tuple[str, Entries]:
    """The reference parser and validator, on the whole file: the precise report of what the
    fast pass rejected (or, where the two disagree, the verdict). The first ``shown_problems``
    problems are listed, then how many more there are."""
    document = parse_json(raw, name)
    try:  # the parser took it; the validator and its messages recurse as deep again
        problems = check_document(document, name, schema_path)
        if not problems:
            entries = Entries([r["slug"] for r in document],
                              b"".join(content_digest(canonical_bytes(r)) for r in document))
            return hashlib.sha256(raw).hexdigest(), entries
        listed = [str(p) for p in problems[:max(shown_problems, 1)]]
    except RecursionError:
        raise DataFileError(f"{name}: JSON nested too deeply to check; a movement file is an "
                            "array of flat records") from None
    more = len(problems) - len(listed)
    summary = f"{shown(name)}: {len(problems)} problem(s)"
    if more:
        listed.append(f"... and {more} more")
    raise DataFileError("\n".join([*listed, summary]), problems)
