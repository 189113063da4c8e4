"""Files read once, bounded and without blocking: what a trust decision is made of (a manifest,
a signature, an allowed_signers file) is read in one go, as a regular file of a known size limit;
a FIFO, a device or a directory is refused by its kind, never opened for a read that could wait."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .text import shown_path


def read_bounded(path: Path, limit: int, what: str, error: type[Exception],
                  then: str = "refusing the dump") -> bytes | None:
    """The bytes of the regular file at ``path``, or None when nothing is there. A FIFO, a
    directory or a device is refused by its kind before it is opened (O_NONBLOCK as well, should
    it be swapped in between), and nothing larger than ``limit`` is read."""
    name = shown_path(path)
    try:
        before = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"{what} {name} cannot be read ({exc.strerror or exc}); {then}") from None
    kind = _kind(before.st_mode)
    if kind:
        raise error(f"{what} {name} is {kind}, not a regular file; {then}")
    if before.st_size > limit:
        raise error(f"{what} {name} is {before.st_size} bytes, larger than the {limit // 1024} KiB "
                    f"such a file can be; {then}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{what} {name} cannot be read ({exc.strerror or exc}); {then}") from None
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind:
            raise error(f"{what} {name} is {kind}, not a regular file; {then}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"{what} {name} cannot be read ({exc.strerror or exc}); {then}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise error(f"{what} {name} grew past the {limit // 1024} KiB such a file can be while it "
                    f"was read; {then}")
    return b"".join(chunks)


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")

