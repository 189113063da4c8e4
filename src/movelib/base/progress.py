"""Progress of long steps: a live line on a terminal, plain log lines otherwise.

Library code reports through a plain callback ``(stage, done, total)``; this module turns
those calls into output. A step is shown only once it has run for about a second, so short
runs stay quiet; ``quiet=True`` silences it all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from .console import live_lines

SHOW_AFTER = 1.0  # seconds a step runs before it is shown
LOG_EVERY = 5.0  # seconds between plain log lines
_LIVE: ProgressReporter | None = None  # the reporter whose line is on the terminal now


def end_live_line() -> None:
    """End a live progress line before other output, so that output starts on a line of its
    own (tasks call it before every message)."""
    if _LIVE is not None:
        _LIVE.close()


class ProgressReporter:
    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.stream = stream or sys.stderr
        self.quiet = quiet
        # a line rewritten in place only where the terminal shows it as one (not TERM=dumb,
        # not the old Windows console)
        self.tty = live_lines(self.stream) if tty is None else tty
        self.stage = ""
        self.started = 0.0
        self.last = 0.0
        self.live = False

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.quiet:
            return
        now = self.clock()
        if stage != self.stage:
            self._end_line()
            self.stage, self.started, self.last = stage, now, now
        elapsed = now - self.started
        finished = total is not None and done >= total
        if elapsed < SHOW_AFTER:
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        count = f"{done:,}/{total:,}" if total is not None else f"{done:,}"
        # a rate only where it says something: rows per second, not "1/3 steps (0/s)"
        speed = f"{rate:,.0f}/s, " if rate >= 10 else ""
        text = f"{stage}: {count} ({speed}{elapsed:.1f} s)"
        if self.tty:
            global _LIVE
            self.stream.write(f"\r\033[K{text}")
            self.live = True
            _LIVE = self
            if finished:
                self._end_line()
        elif finished or now - self.last >= LOG_EVERY:
            self.stream.write(text + "\n")
            self.last = now
        self.stream.flush()

    def _end_line(self) -> None:
        global _LIVE
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
            self.live = False
        if _LIVE is self:
            _LIVE = None

    def close(self) -> None:
        self._end_line()
