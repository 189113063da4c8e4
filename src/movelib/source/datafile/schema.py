"""A JSON Schema file and its validators: jsonschema-rs for the fast pass, the reference
``jsonschema`` for the precise report (and for a manifest). Both are cached per schema file and
modification time; every schema movelib reads is read here."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...base.errors import ConfigError
from ...base.text import shown_path

# Top-level keywords the batch validator may apply to a part of the array; with any other
# (minItems, contains...) only the whole file can be judged, by the careful pass.
_BATCHABLE = {"$schema", "$id", "$defs", "$comment", "title", "description", "type", "items"}


def read_schema(schema_path: Path) -> Any:
    """The schema file's JSON; :class:`ConfigError` if it cannot be read."""
    try:
        return json.loads(schema_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the schema {shown_path(schema_path)}: {exc}") from None


def schema_mtime(schema_path: Path) -> float:
    """When the schema last changed: the key that keeps a cached validator current."""
    try:
        return schema_path.stat().st_mtime
    except OSError as exc:
        raise ConfigError(f"cannot read the schema {shown_path(schema_path)}: {exc}") from None


@lru_cache(maxsize=8)
def reference_validator(schema_path: Path, mtime: float) -> Any:
    """``jsonschema``'s Draft 2020-12 validator; :class:`ConfigError` for a schema it refuses."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    schema = read_schema(schema_path)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(f"the schema {shown_path(schema_path)} is not a valid JSON Schema: "
                          f"{exc.message}") from None
    return Draft202012Validator(schema)


@lru_cache(maxsize=8)
def fast_validator(schema_path: Path, mtime: float) -> Any:
    """jsonschema-rs for a batch of records: ~100x the pure-Python speed. ``None`` when the
    schema judges the array as a whole, so that only the careful pass can apply it."""
    import jsonschema_rs

    schema = read_schema(schema_path)
    if not isinstance(schema, dict) or not set(schema) <= _BATCHABLE:
        return None
    try:
        return jsonschema_rs.validator_for(schema)
    except jsonschema_rs.ValidationError:
        reference_validator(schema_path, mtime)  # says what is wrong with the schema
        return None  # the two disagree about the schema: the careful pass decides


def ecma_validator(schema_path: Path) -> Any:
    """jsonschema-rs on the whole document (ECMA-262 patterns); ``None`` when it refuses the
    schema (the reference validator says what is wrong with it)."""
    import jsonschema_rs

    try:
        return jsonschema_rs.validator_for(read_schema(schema_path))
    except (ConfigError, jsonschema_rs.ValidationError):
        return None
