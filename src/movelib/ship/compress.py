"""A release's dump compressed, and read back: what ships is ``<dump>.sql.gz``.

gzip, from Python's standard library: no dependency, every platform, and ``gunzip -c`` (or
``zcat``) turns it back into the SQL ``psql -1 -f`` applies. Written deterministically (no name,
no time in the header), so the same dump compresses to the same bytes. The manifest records both
forms: ``size``/``sha256`` of the SQL (what is loaded, checked line by line as before) and
``compressed`` (file, format, size, sha256 of what ships). A restore (and a promotion) reads
either form; a compressed one is hashed as it is read and decompressed in the same pass, a block
ahead on a second thread, and never past the SQL size its manifest gives. Either form's SQL is
read (and hashed) a block ahead on that thread.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ..base.errors import ArtifactError
from ..base.files import HashingWriter, atomic_file
from ..base.text import shown_path

SUFFIX = ".gz"
FORMAT = "gzip"
LEVEL = 6  # zlib's default level
# A file in git above this is a problem: GitHub warns at 50 MB and refuses 100 MB.
GIT_FILE_LIMIT = 50 * 1024 * 1024
AHEAD = 8 << 20  # bytes read (and hashed) at a time by the reading thread


def is_compressed(path: Path) -> bool:
    return path.name.endswith(".sql" + SUFFIX)


def compress(path: Path) -> dict[str, object]:
    """Write ``<path>.gz`` beside the SQL dump ``path``; the manifest's ``compressed`` entry."""
    out = path.with_name(path.name + SUFFIX)
    with path.open("rb") as source, atomic_file(out) as handle:
        hashed = HashingWriter(handle)
        with gzip.GzipFile(filename="", mode="wb", compresslevel=LEVEL,
                           fileobj=hashed, mtime=0) as packed:  # type: ignore[call-overload]
            while block := source.read(1 << 20):
                packed.write(block)
    return {"file": out.name, "format": FORMAT, "size": hashed.size,
            "sha256": hashed.digest.hexdigest()}


class _Hashing(io.RawIOBase):
    """The compressed file as it is read, hashed."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.handle.read(len(buffer))
        buffer[:len(data)] = data
        self.digest.update(data)
        self.size += len(data)
        return len(data)


class Blocks(Protocol):
    """What a dump's SQL is read from, a block at a time."""

    def read(self, size: int = -1, /) -> bytes: ...


class _ReadAhead:
    """The SQL read (or inflated) and hashed on a second thread, :data:`AHEAD` bytes at a time
    and one such read ahead (file reads, zlib and sha256 let go of the GIL), given out in
    ``block``-sized pieces: the reader checks a block's lines while the next ones are read and
    hashed. The thread needs the GIL back after each of its reads, and waits for it while the
    reader holds it: at 8 MB rather than 1 MB it waits 32 times over a 256 MB dump, not 256 (the
    check of a 100k dump 1.5 s against 1.9 s; at 1 MB no faster than hashing in line). Blocks
    come in order; an error of the thread is raised by the ``read`` that would have returned
    it. ``digest`` is the sha256 of every piece given out, once the last (empty) one was."""

    def __init__(self, inner: IO[bytes], block: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.inner, self.block = inner, block
        self.digest = hashlib.sha256()
        self._chunk, self._at = b"", 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="movelib-read")
        self._next = self._pool.submit(self._read)

    def _read(self) -> bytes:
        data = self.inner.read(max(AHEAD, self.block))
        self.digest.update(data)
        return data

    def read(self, size: int = -1) -> bytes:
        if self._at >= len(self._chunk):
            self._chunk, self._at = self._next.result(), 0
            if not self._chunk:  # nothing is read past the end: check() reads the raw file alone
                return b""
            self._next = self._pool.submit(self._read)
        piece = self._chunk[self._at:self._at + self.block]
        self._at += len(piece)
        return piece

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class Shipped:
    """A dump opened for reading: ``handle`` gives the SQL; ``sql_sha256()`` is the sha256 of
    what it gave, and ``check()`` compares what was read of a compressed file with the manifest
    (both once the SQL is read to its end)."""

    handle: _ReadAhead
    path: Path
    expected: dict[str, object] | None = None
    hashing: _Hashing | None = None

    def sql_sha256(self) -> str:
        return self.handle.digest.hexdigest()

    def check(self) -> None:
        if self.hashing is None or self.expected is None:
            return
        while self.hashing.read(1 << 20):  # anything after the gzip stream counts too
            pass
        found = (self.hashing.size, self.hashing.digest.hexdigest())
        if found != (self.expected["size"], self.expected["sha256"]):
            raise ArtifactError(f"{shown_path(self.path)} changed while it was read (its sha256 no "
                                "longer matches the manifest's compressed sha256); refusing it")


@contextmanager
def opened(path: Path, compressed: dict[str, object] | None,
           block: int = 1 << 20) -> Iterator[Shipped]:
    """``path`` for reading as SQL, in ``block``-sized reads: decompressed on the fly (a block
    ahead, on a second thread) when it is a ``.sql.gz``, whose manifest must record its
    compressed form, ``compressed``."""
    if not is_compressed(path):
        with path.open("rb") as handle:
            ahead = _ReadAhead(handle, block)
            try:
                yield Shipped(ahead, path)
            finally:
                ahead.close()
        return
    if compressed is None:
        raise ArtifactError(f"{shown_path(path)} is compressed, and its manifest records no "
                            "compressed form (written by `inv release`); refusing it")
    with path.open("rb") as raw:
        hashing = _Hashing(raw)
        try:
            with gzip.GzipFile(fileobj=hashing, mode="rb") as packed:
                ahead = _ReadAhead(packed, block)  # type: ignore[arg-type]
                try:
                    yield Shipped(ahead, path, compressed, hashing)
                finally:
                    ahead.close()
        except (gzip.BadGzipFile, EOFError, OSError, zlib.error) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) \
                    and exc.errno is not None:
                raise
            raise ArtifactError(f"{shown_path(path)} is not a complete gzip file ({exc}); refusing "
                                "it") from None
