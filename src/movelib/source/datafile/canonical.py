"""The canonical form of a movement: the bytes its content hash is taken of."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 text unescaped: what the content hash is taken of.

    orjson writes exactly what ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` writes for strings, lists and objects (the only values a valid
    movement holds; a test keeps the two in step), four times faster. What orjson cannot write
    (nesting deeper than its 254 levels, integers beyond 64 bits) the standard library writes.
    """
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _reference(document).encode("utf-8")


def canonical_json(document: Mapping[str, Any]) -> str:
    """:func:`canonical_bytes` as text."""
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except orjson.JSONEncodeError:
        return _reference(document)


def content_digest(canonical: bytes) -> bytes:
    """The raw sha256 of a canonical form: what :class:`~movelib.source.datafile.Entries` keeps."""
    return hashlib.sha256(canonical).digest()


def content_hash(canonical: str | bytes) -> str:
    """:func:`content_digest` in hex: the ``content_hash`` the database stores."""
    return content_digest(canonical.encode("utf-8") if isinstance(canonical, str)
                          else canonical).hex()


def _reference(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
