"""Files written atomically: through a temporary file, fsynced, then renamed into place, so a
reader never sees half a file; and the writer that hashes what it writes."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import ArtifactWriteError, FileInUse
from .text import shown_path


class HashingWriter:
    """A binary file that hashes what goes through it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)


class BackgroundWriter:
    """Writes (and hashes) on a second thread, one block behind, so the caller keeps reading
    from the database while the previous megabyte goes to disk. Blocks are written in order;
    a write error is raised by the next ``write`` or by ``close``."""

    def __init__(self, inner: HashingWriter) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        self.inner = inner
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="movelib-writer")
        self._pending: Future[None] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self.inner.write, data)

    def close(self) -> None:
        try:
            if self._pending is not None:
                self._pending.result()
        finally:
            self._pool.shutdown(wait=True)


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """Write ``path`` through a temporary file: fsync, then rename; never half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno is None:
            raise
        raise ArtifactWriteError(
            f"cannot write {shown_path(path)}: {exc.strerror or exc} (errno {exc.errno}); nothing "
            "was left half-written: free space there and run again"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _replace(tmp: Path, path: Path) -> None:
    """``os.replace``, and when ``path`` cannot be replaced (on Windows: another program has it
    open) one line that says which file and what to do, not a traceback."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise FileInUse(
            f"could not replace {shown_path(path)}: {exc.strerror or exc}. Another program may hold it open "
            "(an editor, a running restore, a backup or virus scan): close it and run again; "
            f"{path.name} was left as it was"
        ) from None


@contextmanager
def staged(path: Path, data: bytes) -> Iterator[Callable[[], None]]:
    """``data`` written in full to a temporary file beside ``path``; the block calls the yielded
    function to rename it into place (no space needed then). Left without calling it, or by an
    error, the temporary file is removed and ``path`` is untouched."""
    with atomic_file(path.with_name(f"{path.name}.staged")) as handle:
        handle.write(data)
    temp = path.with_name(f"{path.name}.staged")
    try:
        yield lambda: _replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def copy_atomically(source: Path, path: Path) -> None:
    with atomic_file(path) as handle, source.open("rb") as src:
        while chunk := src.read(1 << 20):
            handle.write(chunk)


def link_atomically(source: Path, path: Path) -> None:
    """Make ``path`` a second name of ``source`` (a hard link, renamed into place), or a copy
    where the file system has no hard links. Either way ``path`` is never half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
    except OSError:
        copy_atomically(source, path)
        return
    try:
        _replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    if sys.platform == "win32":
        return  # directories cannot be opened for fsync on Windows; rename is durable there
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
