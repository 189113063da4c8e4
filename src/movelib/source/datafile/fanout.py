"""Both halves of a large file at once: the second read by a forked child process."""

from __future__ import annotations

import gc
import hashlib
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from .batches import BOUNDARY, Batches, NeedsReport, blocks
from .entries import Entries, Slugs
from .records import Progress
from .scan import scan


def two_process_pass(path: Path, validator: Any, hashes: bool,
                     progress: Progress | None) -> tuple[str, Entries] | None:
    """The fast pass in two processes: (sha256 of the file, entries).

    The file is cut after a ``},{`` near its middle. The first half is read here as an array
    closed at the cut: if it parses, the cut was between two records (see :class:`Batches`)
    and the child's half starts at a record. ``None`` when the halves cannot be used (the cut
    fell inside a record, either half needs the precise report, or the child died): the caller
    then reads the file in one pass. Any other exception, in either process, is raised here.
    """
    if sys.platform == "win32":
        return None  # no fork on Windows (the caller uses this pass on Linux only)
    import multiprocessing

    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(size // 2)
        found = BOUNDARY.search(handle.read(1 << 20))
    if found is None:
        return None
    cut, resume = size // 2 + found.start() + 1, size // 2 + found.end() - 1
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_scan_in_child, daemon=True,
                            args=(sender, receiver, path, resume, validator, hashes))
    # Ctrl-C held while the child is forked: one landing inside start() would leave a child
    # that nobody stops, still holding the terminal's output (and this process's exit waiting)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        child.start()
        sender.close()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a Ctrl-C held lands in the try below
    try:
        digest = hashlib.sha256()
        head = scan(Batches(blocks(path, digest, 0, cut, after=b"]")), validator, hashes,
                    progress=progress)
        for _ in blocks(path, digest, cut):  # the child's half still counts in the hash
            pass
        tail: tuple[Slugs, bytes] | str | None = receiver.recv()
    except (NeedsReport, EOFError):  # EOFError: the child died without a word
        tail = None
    except BaseException:  # Ctrl-C or a bug here: the child's half is of no use any more
        child.kill()
        raise
    finally:
        receiver.close()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
    if isinstance(tail, str):
        raise RuntimeError(f"reading the second half of {path} failed in a child process:\n{tail}")
    if tail is None:
        return None
    entries = head
    entries.extend(Entries(*tail))
    if progress:
        progress("validate", len(entries), None)
    return digest.hexdigest(), entries


def _scan_in_child(sender: Any, receiver: Any, path: Path, resume: int, validator: Any,
                   hashes: bool) -> None:
    """The forked half: its slugs and raw hashes; ``None`` when it needs the precise report (the
    parent reads the file again, and says what is wrong); the traceback of anything else.
    Ctrl-C reaches the whole process group: the parent says what was interrupted and stops
    this child, which must not print a traceback of its own. The parent's end of the pipe,
    which the fork copied, is closed here: a parent gone (killed) is then a broken pipe, and
    this child ends instead of waiting for ever for a reader of its result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform != "win32":  # (never forked there)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked across the fork
    receiver.close()
    gc.disable()
    result: tuple[Slugs, bytes] | str | None
    try:
        entries = scan(Batches(blocks(path, None, resume, before=b"[")), validator, hashes)
        result = (entries.slugs, entries.raw_hashes)
    except NeedsReport:
        result = None
    except Exception:  # a bug, not the data: the parent raises it rather than redo the work
        result = traceback.format_exc()
    try:
        sender.send(result)
        sender.close()
    except OSError:  # the parent is gone: nobody wants the result
        pass
