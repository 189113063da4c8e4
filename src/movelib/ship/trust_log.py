"""The trust log checked: a hash chain whose replay must give the pinned signers and threshold.

Migration 0008 chains ``movement_trust_log``: each entry holds the previous entry's hash and its
own, over every column it records. Every read of a database's trust (:func:`check_log`, called
by :func:`movelib.ship.trust.read_trust`, so by every task that uses the signers) recomputes each
entry's hash with movelib's own SQL (:data:`ENTRY`, built from ``pg_catalog`` functions only: no
function the database's owner could replace is called), follows the links, replays the pins,
unpins and thresholds, and compares the result with the tables. A signer inserted behind the
disabled triggers has no entry; an edited entry no longer has its hash; a deleted one breaks the
link after it (or, at the end, leaves a signer or threshold the replay disagrees with).

What the chain cannot see: an owner who writes signers and log entries consistently, hashes
included. SECURITY.md says so, and how to keep the restoring role from owning the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from ..base.text import shown
from ..database.tables import TRUST_LOG_TABLE, TRUST_SIGNER_TABLE, TRUST_THRESHOLD_TABLE

MIGRATION = "0008.movement-trust-chain"
# The hash of a log entry ``l``: migration 0008's movement_trust_entry_hash, spelt again here so
# that the check never calls the database's own function.
ENTRY = ("pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.jsonb_build_array("
         "l.prev_hash, l.change, l.principal, l.fingerprint, l.public_key, l.threshold, "
         "l.changed_by, l.db_user, pg_catalog.to_char(l.changed_at AT TIME ZONE 'UTC', "
         "'YYYY-MM-DD\"T\"HH24:MI:SS.US'))::text, 'UTF8')), 'hex')")
GENESIS = ""  # the first entry's prev_hash
SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class LogCheck:
    """What the log's check found: how many entries, the last one's hash (``head``, to compare
    with one noted elsewhere), and every disagreement (``problems``; none when the trust holds).
    ``chained`` is False on a database before migration 0008 (nothing to check yet)."""

    entries: int = 0
    head: str = GENESIS
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    chained: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        if not self.chained:
            return f"log not chained (migration {MIGRATION} not applied: run `inv migrate`)"
        head = self.head[:16] if self.head else "(empty)"
        return (f"{self.entries} change{'s' if self.entries != 1 else ''}, hash-chained, "
                f"head {head}")

    def summary(self) -> str:
        """The problems in one sentence, for a refusal."""
        more = len(self.problems) - SHOWN_PROBLEMS
        listed = "; ".join(self.problems[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0
                                                                 else "")
        return (f"the pinned trust does not match its log ({listed}): it was changed behind "
                "movelib's triggers, so no signer it holds is trusted (`inv trust.list` shows "
                "it; SECURITY.md says what to do)")


@dataclass
class _Replay:
    signers: dict[str, tuple[str, str]] = field(default_factory=dict)  # fingerprint -> (principal, key)
    threshold: int | None = None


def _chained(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) = 2 FROM pg_catalog.pg_attribute WHERE attrelid = "
        "pg_catalog.to_regclass(%s) AND attname IN ('prev_hash', 'entry_hash') "
        "AND NOT attisdropped", (TRUST_LOG_TABLE,)).fetchone()
    return bool(row and row[0])


def check_log(conn: psycopg.Connection) -> LogCheck:
    """Check the trust log's chain and its replay against the trust tables, in the caller's
    transaction (one snapshot for the three tables)."""
    if not _chained(conn):
        return LogCheck(chained=False)
    entries = conn.execute(
        f"SELECT l.id, l.change, l.principal, l.fingerprint, l.public_key, l.threshold, "
        f"l.prev_hash, l.entry_hash, {ENTRY} FROM {TRUST_LOG_TABLE} AS l ORDER BY l.id").fetchall()
    problems: list[str] = []
    notes: list[str] = []
    replay = _Replay()
    prev = GENESIS
    for id_, change, principal, fingerprint, key, threshold, prev_hash, entry_hash, recomputed \
            in entries:
        what = (f"entry {id_} ({change} {shown(principal)} {shown(fingerprint)})"
                if change != "threshold" else f"entry {id_} (threshold {threshold})")
        if prev_hash != prev:
            problems.append(f"{what} does not follow the entry before it: an entry was deleted "
                            "or the chain rewritten" if prev else
                            f"{what} is not the log's first: the entries before it were deleted")
        if entry_hash != recomputed:
            problems.append(f"{what} is not what its hash says: it was edited")
        prev = entry_hash or ""
        if change == "pin":
            replay.signers[fingerprint] = (principal, key)
        elif change == "unpin":
            if replay.signers.pop(fingerprint, None) is None:
                notes.append(f"{what} unpinned a key the log never pinned")
        elif change == "threshold":
            replay.threshold = threshold
    _compare(conn, replay, problems)
    return LogCheck(len(entries), prev, tuple(problems), tuple(notes))


def _compare(conn: psycopg.Connection, replay: _Replay, problems: list[str]) -> None:
    pinned = {fp: (principal, key) for principal, fp, key in conn.execute(
        f"SELECT principal, fingerprint, public_key FROM {TRUST_SIGNER_TABLE} ORDER BY id")}
    for fp, (principal, key) in pinned.items():
        logged = replay.signers.get(fp)
        if logged is None:
            problems.append(f"{shown(principal)} ({shown(fp)}) is pinned but the log never "
                            "pinned it")
        elif logged != (principal, key):
            problems.append(f"{shown(principal)} ({shown(fp)}) is pinned with another principal "
                            f"or key than the log's ({shown(logged[0])})")
    for fp, (principal, _) in replay.signers.items():
        if fp not in pinned:
            problems.append(f"{shown(principal)} ({shown(fp)}) is pinned by the log but not in "
                            "the table: unpinned without an entry")
    row = conn.execute(f"SELECT threshold FROM {TRUST_THRESHOLD_TABLE}").fetchone()
    threshold = int(row[0]) if row else None
    if threshold != replay.threshold:
        problems.append(f"the threshold is {threshold or 'unset'} but the log says "
                        f"{replay.threshold or 'unset'}")
