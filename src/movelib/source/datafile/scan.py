"""The fast pass over a stream of batches: each batch checked by jsonschema-rs, slugs unique,
and of each record only its slug and raw content hash kept (:class:`Entries`)."""

from __future__ import annotations

from itertools import repeat
from typing import Any

import orjson

from .batches import Batches, NeedsReport, delimiters
from .canonical import canonical_bytes, content_digest
from .entries import Entries
from .records import Progress


def scan(batches: Batches, validator: Any, hashes: bool, first: int = 0,
         progress: Progress | None = None) -> Entries:
    """Validate every batch; the entries (whether slugs are unique is for the caller to ask:
    :meth:`Entries.duplicate`).

    A record the schema lets through without being an object with a string slug (a schema
    laxer than ours) raises :class:`NeedsReport`: the precise report says which.
    """
    entries = Entries()
    strings = 0
    for batch in batches:
        if not validator.is_valid(batch):
            raise NeedsReport("schema")
        index = first + len(entries)
        try:
            slugs = [record["slug"] for record in batch]
        except (KeyError, TypeError):  # not an object, or one without a slug
            raise NeedsReport("a record without a slug") from None
        if not all(map(isinstance, slugs, repeat(str))):
            raise NeedsReport("a slug that is not a string")
        if hashes:
            canonical = [canonical_bytes(record) for record in batch]
            strings += delimiters(b"".join(canonical))
            entries.add(slugs, [content_digest(text) for text in canonical])
        else:
            strings += delimiters(_dumps(batch))
            entries.add(slugs, None)
        if progress:
            progress("validate", index + len(batch), None)
    batches.finish(strings)
    return entries


def _dumps(batch: list[Any]) -> bytes:
    """The batch as JSON in any form (only its strings are counted)."""
    try:
        return orjson.dumps(batch)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return b"".join(map(canonical_bytes, batch))
