"""What the other end of stdout and stderr can take, on Linux, macOS and Windows alike.

Three facts a task needs before it writes: whether a redirected document is written as UTF-8
(on Windows Python writes a redirected stream in the ANSI code page, cp1252), whether a live
``\\r\\033[K`` progress line will show as one line or as garbage (the old Windows console,
``TERM=dumb``), and whether the reader went away (``BrokenPipeError`` on POSIX, ``OSError``
``EINVAL`` on Windows).
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import sys
from collections.abc import Mapping
from typing import TextIO


def utf8_output(stream: TextIO) -> None:
    """Make ``stream`` write what it cannot encode as replacement characters, never an
    exception; and when it is not a terminal (a file, a pipe), write it as UTF-8, the encoding
    of every document movelib writes (a Markdown plan, JSON).

    On a terminal the encoding stays the terminal's (Python writes the Windows console in
    UTF-16 whatever the code page)."""
    if not isinstance(stream, io.TextIOWrapper):
        return  # a test's capture, or a stream someone replaced: theirs to decide
    if codecs.lookup(stream.encoding).name == "utf-8":
        return
    if _isatty(stream):
        stream.reconfigure(errors="replace")
    else:
        stream.reconfigure(encoding="utf-8", errors="replace")


def reader_gone(exc: OSError, platform: str = sys.platform) -> bool:
    """True when writing failed because the reader closed the pipe (``inv seed | head -1``):
    ``BrokenPipeError`` on POSIX; on Windows a write to a closed pipe raises ``OSError`` with
    ``EINVAL`` (errno 22) instead."""
    if isinstance(exc, BrokenPipeError):
        return True
    return platform == "win32" and exc.errno == errno.EINVAL


def drop_output(stream: TextIO, exc: OSError) -> None:
    """After a write to ``stream`` failed with ``exc``: when the reader has gone, send the rest
    of its output (the interpreter's last flush included) to the null device; else re-raise."""
    if not reader_gone(exc):
        raise exc
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def live_lines(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``stream`` is a terminal that rewrites a line in place with ``\\r\\033[K``.

    Not a terminal, or ``TERM=dumb``: no. On Windows the console handles the escape only in
    virtual-terminal mode, which is switched on here (Windows 10 and later); where it cannot be
    (an older console), progress falls back to plain lines."""
    if not _isatty(stream) or environ.get("TERM") == "dumb":
        return False
    if sys.platform == "win32":
        return _enable_virtual_terminal(stream)
    return True


def mintty_hint(environ: Mapping[str, str] = os.environ) -> str:
    """Git Bash's terminal (mintty) is a pipe to Python, not a terminal: a prompt cannot be
    answered there. The words that say so, or ``""`` elsewhere."""
    if environ.get("TERM_PROGRAM") == "mintty" or environ.get("MSYSTEM"):
        return (" (Git Bash's mintty terminal is not a terminal to Python, so nothing can be "
                "asked there: pass the option, or run the command from PowerShell or cmd)")
    return ""


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):  # closed, or no file behind it
        return False


def _enable_virtual_terminal(stream: TextIO) -> bool:
    if sys.platform != "win32":
        return True
    import ctypes
    import msvcrt
    from ctypes import wintypes

    enable_vt = 0x0004  # ENABLE_VIRTUAL_TERMINAL_PROCESSING
    try:
        handle = msvcrt.get_osfhandle(stream.fileno())
    except (OSError, ValueError):
        return False
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    mode = wintypes.DWORD()
    if not kernel32.GetConsoleMode(wintypes.HANDLE(handle), ctypes.byref(mode)):
        return False
    if mode.value & enable_vt:
        return True
    return bool(kernel32.SetConsoleMode(wintypes.HANDLE(handle), mode.value | enable_vt))
