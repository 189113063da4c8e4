"""Whom a database trusts to sign the releases restored into it, held by that database.

TUF's root of trust, in this project's terms: the party protected says whom it trusts. Migration
0005 gives every database ``movement_trust_signer`` (principal and public key; the fingerprint
derived by the database), ``movement_trust_threshold`` (how many distinct signers must agree;
1 without a row) and ``movement_trust_log`` (every change, who and when, written by the
database's own triggers; append-only). A dump neither carries nor drops them. ``inv trust.*``
read and change them; each change is one transaction holding the target's lock, and on a
production-labelled target a protected write (``--allow-protected`` and the name confirmed).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from ..base.defaults import LOCK_TIMEOUT
from ..base.errors import SchemaNotApplied, TrustBroken, TrustChangeError
from ..base.text import shown, shown_path
from ..database import db
from ..database.guard import PROTECTED, Permission, check_protected
from ..database.provenance import run_by
from ..database.tables import (
    TRUST_LOG_TABLE,
    TRUST_SIGNER_TABLE,
    TRUST_THRESHOLD_TABLE,
    environment_label,
    table_exists,
)
from ..database.target import Target
from .allowed_signers import parse_allowed_signers
from .sshkeys import PublicKey
from .trust_log import LogCheck, check_log

MAX_KEY_FILE = 64 * 1024
MAX_THRESHOLD = 16  # the migration's CHECK says the same
PRINCIPAL = "letters, digits and . _ @ + - (e.g. re@example.com)"
SHOWN_LOG = 10  # changes trust.list shows
_ACTIONS = {"trust.pin": "pin a signer", "trust.unpin": "unpin a signer",
            "trust.threshold": "change the signing threshold"}


@dataclass(frozen=True)
class Pinned:
    principal: str
    key: PublicKey
    pinned_by: str
    pinned_at: datetime

    def line(self) -> str:
        return (f"  {shown(self.principal)}  {self.key.short_type} {self.key.fingerprint}  "
                f"(pinned {self.pinned_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC by "
                f"{shown(self.pinned_by)})")


@dataclass(frozen=True)
class PinnedTrust:
    """What a database trusts: its pinned signers and threshold (``installed`` False when it
    predates migration 0005), and what the check of its log found (``log``: a trust whose log
    disagrees is refused by every task that uses it)."""

    database: str
    signers: tuple[Pinned, ...] = ()
    threshold: int = 1
    installed: bool = True
    log: LogCheck = field(default_factory=LogCheck)

    def describe(self) -> str:
        """``2 signers pinned in athlete_planning, threshold 2``."""
        count = len(self.signers)
        return (f"{count} signer{'s' if count != 1 else ''} pinned in {shown(self.database)}, "
                f"threshold {self.threshold}")

    def principals(self) -> int:
        return len({s.principal for s in self.signers})


def read_trust(conn: psycopg.Connection, database: str) -> PinnedTrust:
    """The database's pinned trust and its log's check, read in the caller's transaction."""
    if not table_exists(conn, TRUST_SIGNER_TABLE):
        return PinnedTrust(database, installed=False)
    log = check_log(conn)
    rows = conn.execute(f"SELECT principal, public_key, pinned_by, pinned_at FROM "
                        f"{TRUST_SIGNER_TABLE} ORDER BY principal, id").fetchall()
    found = conn.execute(f"SELECT threshold FROM {TRUST_THRESHOLD_TABLE}").fetchone()
    signers = tuple(Pinned(r[0], _key(r[1]), r[2], r[3]) for r in rows)
    return PinnedTrust(database, signers, int(found[0]) if found else 1, log=log)


def _key(text: str) -> PublicKey:
    return PublicKey.from_blob(base64.b64decode(text.split(" ", 1)[1]))


def how_to_pin(target: Target) -> str:
    """The commands that pin a signer in ``target``, for a refusal's message."""
    return (f"pin each release signer's public key there: `inv trust.pin KEY.pub --principal NAME "
            f"--dsn ... --allow-protected --confirm {target.dbname}` (and `inv trust.threshold N` "
            "for N signers per release)")


# -- changes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustChange:
    """What a ``trust.*`` task did, and the trust it left."""

    done: str
    trust: PinnedTrust
    label: str | None

    def lines(self) -> list[str]:
        lines = [self.done, f"trust: {self.trust.describe()}"]
        lines += [f"warning: {problem}" for problem in self.trust.log.problems]
        if self.trust.threshold > self.trust.principals():
            lines.append(f"note: the threshold {self.trust.threshold} is more than the "
                         f"{self.trust.principals()} distinct principal(s) pinned: no release "
                         "can be restored here until more are pinned")
        if self.label not in PROTECTED:
            lines.append(f"note: the database is labelled {self.label or 'nothing'}: only a "
                         "production-labelled database's restores use its pinned trust (the "
                         "others read the allowed_signers file)")
        return lines


def read_public_key(path: Path) -> str:
    """``<type> <base64>`` of the first key in a ``.pub`` file (or an authorized_keys-style
    line); a private key, an unsupported key or anything else is refused."""
    try:
        data = path.read_bytes()[:MAX_KEY_FILE]
    except OSError as exc:
        raise TrustChangeError(f"cannot read the key file {shown_path(path)} ({exc.strerror or exc}): give "
                               "the signer's public key, e.g. ~/.ssh/id_ed25519.pub") from None
    if b"PRIVATE KEY" in data:
        raise TrustChangeError(f"{shown_path(path)} is a private key: pin its public half "
                               f"({shown_path(path)}.pub); a private key never leaves its signer")
    line = next((ln.strip() for ln in data.splitlines() if ln.strip() and not ln.startswith(b"#")),
                b"")
    signers = parse_allowed_signers(b"pinned " + line, str(path))
    if not signers:
        raise TrustChangeError(f"{shown_path(path)} holds no public key movelib verifies (ed25519, ecdsa or "
                               "rsa, as ssh-keygen writes a .pub)")
    key = signers[0].key
    return f"{key.key_type} {base64.b64encode(key.blob).decode()}"


def _change(target: Target, action: str, lock_timeout: float, permission: Permission,
            statement: str, params: tuple[object, ...]) -> tuple[int, PinnedTrust, str | None]:
    """Run ``statement`` in one transaction holding the target's lock, after the protected
    check; the run's user@host goes to the log through a setting of this transaction only."""
    with db.connect(target, task=action, autocommit=True) as conn:
        try:
            with db.locked(conn, target, task=action, timeout=lock_timeout):
                check_protected(conn, target, permission, _ACTIONS[action])
                if not table_exists(conn, TRUST_SIGNER_TABLE):
                    raise SchemaNotApplied(
                        f"{target.describe()} has no trust tables (migration "
                        "0005.movement-trust): run `inv migrate` on it first")
                conn.execute("SELECT set_config('movelib.run_by', %s, true)", (run_by(),))
                changed = conn.execute(statement, params).rowcount
                trust = read_trust(conn, target.dbname)
                label = environment_label(conn)
        except psycopg.errors.UniqueViolation:
            raise TrustChangeError(f"that key is already pinned in {target.dbname} (`inv "
                                   "trust.list`); unpin it first to pin it for another "
                                   "principal") from None
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, action)
            raise
    return changed, trust, label


def pin(target: Target, key_file: Path, principal: str, *, lock_timeout: float = LOCK_TIMEOUT,
        permission: Permission | None = None) -> TrustChange:
    """Pin ``key_file``'s public key for ``principal`` in ``target``."""
    if not principal or not all(c.isascii() and (c.isalnum() or c in "._@+-") for c in principal) \
            or len(principal) > 200:
        raise TrustChangeError(f"--principal {shown(principal, 60)}: give a name of {PRINCIPAL}")
    public_key = read_public_key(key_file)
    _, trust, label = _change(
        target, "trust.pin", lock_timeout, permission or Permission(),
        f"INSERT INTO {TRUST_SIGNER_TABLE} (principal, public_key, pinned_by) VALUES (%s, %s, %s)",
        (principal, public_key, run_by()))
    key = _key(public_key)
    return TrustChange(f"pinned: {principal} ({key.short_type} {key.fingerprint}) in "
                       f"{target.dbname}", trust, label)


def unpin(target: Target, fingerprint: str, *, lock_timeout: float = LOCK_TIMEOUT,
          permission: Permission | None = None) -> TrustChange:
    """Remove the pinned key with ``fingerprint`` (``SHA256:...`` as ssh-keygen -l prints it)."""
    wanted = fingerprint.strip()
    if not wanted.startswith("SHA256:"):
        wanted = f"SHA256:{wanted}"
    changed, trust, label = _change(
        target, "trust.unpin", lock_timeout, permission or Permission(),
        f"DELETE FROM {TRUST_SIGNER_TABLE} WHERE fingerprint = %s", (wanted,))
    if not changed:
        raise TrustChangeError(f"no key with fingerprint {shown(wanted, 60)} is pinned in "
                               f"{target.dbname} (`inv trust.list` shows them); nothing changed")
    return TrustChange(f"unpinned: {wanted} from {target.dbname}", trust, label)


def set_threshold(target: Target, threshold: int, *, lock_timeout: float = LOCK_TIMEOUT,
                  permission: Permission | None = None) -> TrustChange:
    """Set how many distinct pinned signers a production restore of ``target`` needs."""
    if not 1 <= threshold <= MAX_THRESHOLD:
        raise TrustChangeError(f"the threshold is a number of signers from 1 to {MAX_THRESHOLD}, "
                               f"not {threshold}")
    _, trust, label = _change(
        target, "trust.threshold", lock_timeout, permission or Permission(),
        f"INSERT INTO {TRUST_THRESHOLD_TABLE} (threshold, set_by) VALUES (%s, %s) "
        "ON CONFLICT (singleton) DO UPDATE SET threshold = excluded.threshold, "
        "set_by = excluded.set_by, set_at = clock_timestamp()",
        (threshold, run_by()))
    return TrustChange(f"threshold: {threshold} in {target.dbname}", trust, label)


# -- inv trust.list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustReport:
    trust: PinnedTrust
    label: str | None
    log: list[tuple[str, str | None, str | None, int | None, str, str, datetime]]

    @property
    def ok(self) -> bool:
        """False when the trust does not match its log (``inv trust.list`` then exits 1)."""
        return self.trust.log.ok

    def raise_if_failed(self) -> None:
        if not self.ok:
            count = len(self.trust.log.problems)
            raise TrustBroken(f"trust.list: the trust of {shown(self.trust.database)} does not "
                              f"match its log ({count} problem{'s' if count != 1 else ''} above)")

    def lines(self) -> list[str]:
        if not self.trust.installed:
            return [f"trust: none: {shown(self.trust.database)} predates migration "
                    "0005.movement-trust (run `inv migrate` on it)"]
        lines = [f"trust: {self.trust.describe()} (labelled {self.label or 'nothing'}"
                 + ("; its restores accept only these signers)" if self.label in PROTECTED
                    else "; used once it is labelled production)")]
        lines += [s.line() for s in self.trust.signers]
        check = self.trust.log
        lines.append(f"log: {check.describe()}" + ("" if check.ok or not check.chained
                                                     else ": DOES NOT MATCH THE TRUST"))
        lines += [f"  problem: {problem}" for problem in check.problems]
        lines += [f"  note: {note}" for note in check.notes]
        if check.problems:
            lines.append("  restores refuse this trust until it matches its log: SECURITY.md "
                         "(\"The database's owner\") says how to find who wrote it and repair it")
        if self.log:
            lines.append(f"changes (latest {len(self.log)}):")
        for change, principal, fingerprint, threshold, by, user, at in self.log:
            what = (f"threshold {threshold}" if change == "threshold"
                    else f"{change} {shown(principal)} ({fingerprint})")
            lines.append(f"  {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC  {what}  by {shown(by)} "
                         f"(role {shown(user)})")
        return lines


def list_trust(target: Target) -> TrustReport:
    """The target's pinned signers, threshold and latest changes (read only)."""
    with db.connect(target, task="trust.list", autocommit=True) as conn:
        try:
            with db.work(conn, read_only=True):
                trust = read_trust(conn, target.dbname)
                label = environment_label(conn)
                log = conn.execute(
                    f"SELECT change, principal, fingerprint, threshold, changed_by, db_user, "
                    f"changed_at FROM {TRUST_LOG_TABLE} ORDER BY id DESC LIMIT {SHOWN_LOG}"
                ).fetchall() if trust.installed else []
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "trust.list")
            raise
    return TrustReport(trust, label, list(reversed(log)))
