"""Reading a data file: the fast pass, and the precise report only when the fast pass raises
:class:`NeedsReport`.

A valid file is read as a stream, twice at most, and never held in memory: the first pass
(orjson on batches of 128 KiB, jsonschema-rs per batch) keeps only each record's
slug and raw content hash (:class:`Entries`); the publish pass streams the records again and
checks that the file's sha256 has not changed. Only when the fast pass finds a problem is the
file parsed whole by the standard library and checked with the reference ``jsonschema``, for
the precise report (line, column, pointer, expectation).
"""

from __future__ import annotations

import codecs
import gc
import os
import stat
import sys
from pathlib import Path

from ...base.defaults import FileLimits
from ...base.errors import DataFileError, DataFileMissing, DataFileUnreadable
from ...base.text import shown_path
from . import fanout
from .batches import Batches, NeedsReport
from .entries import Entries
from .precise import careful_pass, refuse_bom
from .records import Dataset, Progress
from .scan import scan
from .schema import fast_validator, schema_mtime

PARALLEL_MIN_BYTES = 16 << 20  # smaller files are read by one process


def load_movements(path: Path, schema_path: Path, display_name: str | None = None,
                   progress: Progress | None = None, *, hashes: bool = True,
                   limits: FileLimits | None = None) -> Dataset:
    """Validate ``path``; raise :class:`DataFileError` listing every problem.

    Only a regular file is read (a device or FIFO could be endless or block forever), and only
    up to ``limits.max_bytes``. ``hashes=False`` skips the content hashes (left empty) when only
    the verdict is wanted.
    """
    limits = limits or FileLimits()
    name = display_name or shown_path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataFileMissing(f"{name}: no such file") from None
    except OSError as exc:
        raise DataFileUnreadable(f"{name}: cannot read it ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataFileMissing(f"{name}: is a directory, not a data file")
    if not stat.S_ISREG(info.st_mode):
        raise DataFileUnreadable(f"{name}: is not a regular file (a device, FIFO or socket); give the "
                            "path of a JSON data file")
    if info.st_size > limits.max_bytes:
        raise DataFileError(f"{name}: {info.st_size:,} bytes is over the limit of "
                            f"{limits.max_bytes:,} (setting limits.max_bytes)")
    try:
        with path.open("rb") as handle:
            refuse_bom(handle.read(len(codecs.BOM_UTF8)), name)
    except FileNotFoundError:
        raise DataFileMissing(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataFileMissing(f"{name}: is a directory, not a data file") from None
    except OSError as exc:
        raise DataFileUnreadable(f"{name}: cannot read it ({exc.strerror})") from None
    try:
        digest, entries = _fast_pass(path, schema_path, progress, hashes)
    except NeedsReport as signal:
        digest, entries = _precise_report(path, name, schema_path, limits, str(signal))
    return Dataset(path, name, digest, entries)


def _precise_report(path: Path, name: str, schema_path: Path, limits: FileLimits,
                    found: str) -> tuple[str, Entries]:
    """The careful pass over the whole file, if the file is small enough to hold."""
    with path.open("rb") as handle:
        raw = handle.read(limits.report_bytes + 1)
    if len(raw) > limits.report_bytes:
        raise DataFileError(
            f"{name}: the fast reader found a problem ({found}); the file is over the "
            f"{limits.report_bytes:,} bytes the detailed report reads whole, so its problems are "
            "not listed one by one (raise limits.report_bytes, or validate a smaller file)")
    return careful_pass(raw, name, schema_path, limits.shown_problems)


def _fast_pass(path: Path, schema_path: Path, progress: Progress | None,
               hashes: bool = True) -> tuple[str, Entries]:
    validator = fast_validator(schema_path, schema_mtime(schema_path))
    if validator is None:
        raise NeedsReport("the schema constrains the whole array")
    collecting = gc.isenabled()
    gc.disable()  # millions of short-lived objects, no cycles: the collector only slows us down
    try:
        if (path.stat().st_size >= PARALLEL_MIN_BYTES and sys.platform == "linux"
                and (os.cpu_count() or 1) > 1):
            halves = fanout.two_process_pass(path, validator, hashes, progress)
            if halves is not None:
                return _unique(*halves)
        batches = Batches.of_file(path)
        entries = scan(batches, validator, hashes, progress=progress)
        return _unique(batches.digest.hexdigest(), entries)
    finally:
        if collecting:
            gc.enable()


def _unique(digest: str, entries: Entries) -> tuple[str, Entries]:
    """The pass's result, once no two records share a slug (found by sorting them, after the
    batches are gone: the sort reuses their memory)."""
    if entries.duplicate() is not None:
        raise NeedsReport("duplicate slug")
    return digest, entries
