"""What reading a data file yields: problems, movements, and the validated :class:`Dataset`
that streams its records again (what it keeps of each record is in ``entries.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...base.errors import DataFileError
from ...base.text import shown
from .batches import Batches, NeedsReport
from .canonical import canonical_bytes, content_hash
from .entries import Entries


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
        """One line; every value from the file escaped and cut (see :func:`movelib.base.text.shown`)."""
        where = shown(self.file)
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        if self.index is not None:
            where += f": record {self.index}"
            if self.slug:
                where += f" ({shown(self.slug, 80)})"
        if self.pointer is not None:  # a lone surrogate in a key, escaped: it cannot be printed
            pointer = (self.pointer or "/").encode("utf-8", "backslashreplace").decode("utf-8")
            where += f" at {shown(pointer, 120)}"
        return f"{where}: {shown(self.message, 300)}"


@dataclass(slots=True)
class Movement:
    index: int
    slug: str
    document: dict[str, Any]
    canonical: str  # the document as canonical JSON (sorted keys, no spaces)
    content_hash: str  # sha256 of ``canonical``


Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


@dataclass(frozen=True)
class Dataset:
    path: Path
    display_name: str
    sha256: str
    entries: Entries

    def __len__(self) -> int:
        return len(self.entries)

    def batches(self) -> Iterator[tuple[int, list[dict[str, Any]], list[bytes]]]:
        """Stream the records again, a batch at a time: (index of the first record, records,
        their canonical JSON as UTF-8). Raises :class:`DataFileError` at the end if the file
        is not the one that was validated (its sha256 differs): a caller writing from the
        stream must not commit before the iteration finished."""
        batches = Batches.of_file(self.path)
        first = 0
        try:
            for batch in batches:
                yield first, batch, [canonical_bytes(record) for record in batch]
                first += len(batch)
            digest: str | None = batches.digest.hexdigest()
        except NeedsReport:  # it no longer reads as the file that was validated
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
