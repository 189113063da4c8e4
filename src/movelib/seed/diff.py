"""``inv diff``: two movement libraries compared movement by movement, read only on both sides.

Each side is read in one READ ONLY, REPEATABLE READ transaction (rolled back), as a stream its
server sends (``db.stream``); both queries start together, and the two streams are merged as
they arrive (:mod:`movelib.seed.drift`, which says what each kind of difference means). The
report keeps the first differences of each kind for its text and counts them all; the JSON
document lists every one, written to a temporary file as they are found and read back kind by
kind (a million differences are not held either).
"""

from __future__ import annotations

import tempfile
import weakref
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import IO, TYPE_CHECKING, Any

import orjson
import psycopg

from ..base.defaults import SHOWN
from ..base.errors import ConfigError, DriftFound
from ..database import db
from ..database.pgservice import ENV_PREFIX
from ..database.tables import require_content_checks, require_schema
from ..database.target import Target, target_from_dsn
from .drift import KINDS, Difference, Movement, differ, library_movements, merge

if TYPE_CHECKING:
    from ..database.settings import Settings


@dataclass
class DriftReport:
    """What :func:`diff` found: per kind a count and the first :data:`SHOWN` differences; every
    difference is spilled to a temporary file per kind and read back by :meth:`differences`."""

    source: str  # masked
    destination: str  # masked
    movements: tuple[int, int] = (0, 0)  # movements (slugs) on each side
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    first: dict[str, list[Difference]] = field(default_factory=dict)  # up to SHOWN per kind
    drifted: int = 0  # movements (slugs) with at least one difference
    _spilled: dict[str, IO[bytes]] = field(default_factory=dict, repr=False)

    def add(self, found: list[Difference]) -> None:
        """The differences of one movement (the slugs come in byte order)."""
        if found:
            self.drifted += 1
        for d in found:
            self.counts[d.kind] += 1
            shown_now = self.first.setdefault(d.kind, [])
            if len(shown_now) < SHOWN:
                shown_now.append(d)
            if d.kind not in self._spilled:
                spill = self._spilled[d.kind] = tempfile.TemporaryFile(  # noqa: SIM115
                    prefix="movelib-diff-")
                weakref.finalize(self, spill.close)  # closed (and gone) with the report
            self._spilled[d.kind].write(
                orjson.dumps([d.slug, d.source, d.destination, d.detail]) + b"\n")

    def differences(self) -> Iterator[Difference]:
        """Every difference, conflicts first, then by kind and slug, read back one at a time."""
        for kind in KINDS:
            spill = self._spilled.get(kind)
            if spill is None:
                continue
            spill.flush()
            spill.seek(0)
            for line in spill:
                yield Difference(kind, *orjson.loads(line))

    @property
    def equal(self) -> bool:
        return not self.drifted

    def count(self, kind: str) -> int:
        return self.counts[kind]

    def lines(self) -> list[str]:
        lines = [f"from: {self.source} ({self.movements[0]} movements)",
                 f"to:   {self.destination} ({self.movements[1]} movements)"]
        if self.equal:
            return [*lines, "diff: equal (every movement at the same version with the same content)"]
        totals = ", ".join(f"{self.count(k)} {k.lower()}" for k in KINDS if self.count(k))
        lines.append(f"diff: DRIFT in {self.drifted} movement(s): {totals}")
        for kind in KINDS:
            lines += [d.line() for d in self.first.get(kind, [])]
            if self.count(kind) > SHOWN:
                lines.append(f"   ... and {self.count(kind) - SHOWN} more {kind.lower()}")
        if self.count("CONFLICT"):
            lines.append("!! a published version is immutable: the same version with different "
                         "content means two databases published different movements under one "
                         "name. Find out which is right before restoring either way.")
        return lines

    def document(self) -> dict[str, Any]:
        """:meth:`as_dict` with its differences as an iterator, for
        :func:`movelib.base.text.json_blocks` to write while it reads them back."""
        return {
            "equal": self.equal,
            "from": self.source,
            "to": self.destination,
            "movements": {"from": self.movements[0], "to": self.movements[1]},
            "counts": {k.lower(): self.count(k) for k in KINDS},
            "differences": (d.as_dict() for d in self.differences()),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.document(), "differences": [d.as_dict() for d in self.differences()]}

    def raise_if_drift(self) -> None:
        if not self.equal:
            conflicts = self.count("CONFLICT")
            raise DriftFound(
                f"drift between {self.source} and {self.destination}: "
                f"{self.drifted} movement(s) differ"
                + (f", {conflicts} CONFLICT(s)" if conflicts else ""))


def side(settings: Settings, value: str | None, option: str) -> Target:
    """``--from``/``--to``: a URL, a ``key=value`` DSN (``service=NAME``) or ``env:NAME``, else
    a profile's name."""
    value = (value or "").strip()
    if not value:
        raise ConfigError(f"give {option}: a profile name or a PostgreSQL URL")
    if "://" in value or "=" in value or value.startswith(ENV_PREFIX):
        return target_from_dsn(value, option)
    return settings.target(profile=value)


class StreamedSide(Iterator[Movement]):
    """One side's movements as they stream, and how to stop its query from another thread."""

    def __init__(self, movements: Iterator[Movement], cancel: Callable[[], object]) -> None:
        self.movements = movements
        self.cancel = cancel

    def __next__(self) -> Movement:
        return next(self.movements)


@contextmanager
def read_side(target: Target) -> Iterator[StreamedSide]:
    """``with read_side(target) as found:`` ``target``'s library, slug by slug in byte order,
    read in a READ ONLY transaction that is rolled back; a failure while it streams is said
    for ``target``."""
    with db.connect(target, task="diff", autocommit=True) as conn:
        try:
            with db.work(conn, read_only=True):
                require_schema(conn, target)
                require_content_checks(conn, target)
                with library_movements(conn) as found:
                    yield StreamedSide(_said_for(target, found), conn.cancel_safe)
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "the diff")
            raise


def _said_for(target: Target, found: Iterator[Movement]) -> Iterator[Movement]:
    try:
        yield from found
    except psycopg.Error as exc:  # here, not where the other side's stream is open too
        db.raise_sql_error(target, exc, "the diff")
        raise


def _started_together(*sides: StreamedSide) -> list[Iterator[Movement]]:
    """``sides``, each one's first movement asked for at the same time: each server sorts its
    library (a diff's longest wait) while the other does. If either fails, or the wait is
    interrupted (Ctrl-C), both queries are cancelled before that is said."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(len(sides), thread_name_prefix="movelib-diff")
    try:
        firsts = list(pool.map(lambda side: list(islice(side, 1)), sides))
    except BaseException:
        for side in sides:
            with suppress(psycopg.Error, OSError):  # a side already gone has nothing to stop
                side.cancel()
        raise
    finally:
        pool.shutdown()
    return [chain(first, side) for first, side in zip(firsts, sides, strict=True)]


def diff(source: Target, destination: Target) -> DriftReport:
    """Compare ``source``'s library with ``destination``'s (both read only, streamed and merged
    slug by slug: memory stays flat)."""
    report = DriftReport(source.masked(), destination.masked())
    counted = [0, 0]
    with ExitStack() as stack:
        one = stack.enter_context(read_side(source))
        other = stack.enter_context(read_side(destination))
        for here, there in merge(*_started_together(one, other)):
            counted[0] += here is not None
            counted[1] += there is not None
            report.add(differ(here, there))
    report.movements = (counted[0], counted[1])
    return report
