"""No silent rollback: a restore never replaces a release with an older one unnoticed.

What the target holds is what its provenance says (:mod:`movelib.database.provenance`): the latest
record, when it is a restore of a release whose signature was verified then. Replacing it is a
downgrade when the incoming release is older (versions ordered as versions: v1.10 after v1.9,
v2.0-rc1 before v2.0), when it is another artifact under the same version, or when the incoming
dump is not a signed release at all. A downgrade is refused, naming both, unless
``--allow-downgrade`` says it is on purpose (on a production target the restore is a protected
write as well: ``--allow-protected`` and the name confirmed).
"""

from __future__ import annotations

import re

import psycopg

from ..base.errors import DowngradeRefused
from ..base.text import shown
from ..database.provenance import Provenance, latest
from ..database.target import Target
from .manifest import Manifest

_NUMBERS = re.compile(r"\Av([0-9]+(?:\.[0-9]+){0,2})(?:-([0-9A-Za-z.]+))?(?:\+[0-9A-Za-z.]+)?\Z")


def version_key(version: str) -> tuple[tuple[int, ...], int, tuple[tuple[int, int | str], ...]]:
    """A sort key ordering release versions as versions: numeric parts as numbers (v1.2 =
    v1.2.0, v01.10 = v1.10), a pre-release (``-rc2``) before its release and its parts in
    natural order (rc2 before rc10), build metadata (``+abc``, which no release takes any more,
    but one recorded before may carry) ignored."""
    found = _NUMBERS.fullmatch(version)
    if not found:
        return ((), 0, ((1, version),))
    numbers = tuple(int(n) for n in found.group(1).split("."))
    numbers += (0,) * (3 - len(numbers))
    pre = found.group(2)
    if pre is None:
        return (numbers, 1, ())
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|\D+", pre))
    return (numbers, 0, parts)


def held_release(record: Provenance | str) -> Provenance | None:
    """The latest provenance record when it is a signed release's restore; else None."""
    if isinstance(record, Provenance) and record.kind == "restore" and record.release \
            and record.signed_by:
        return record
    return None


def downgrade(held: Provenance | None, manifest: Manifest, signed: bool) -> str | None:
    """Why replacing ``held`` by ``manifest``'s dump is a rollback, or None when it is not."""
    if held is None or held.release is None:
        return None
    holds = f"release {shown(held.release)} (signed by {shown(held.signed_by)})"
    incoming = manifest.release if signed else None
    if incoming is None:
        what = f"release {shown(manifest.release)}" if manifest.release else "dump"
        return (f"the {'unsigned ' if not signed else ''}{what} {shown(manifest.dump_file)} would "
                f"replace {holds}: a dump that is not a verified release is older than any")
    if version_key(incoming) < version_key(held.release):
        return f"release {shown(incoming)} is older than {holds}"
    # "the same version" from the same comparison as "older": v1.0 is v1.0.0 (and, for a release
    # recorded before the one spelling, v1.0+b2 and v01.0)
    if version_key(incoming) == version_key(held.release) and manifest.sha256 != held.artifact_sha256:
        return (f"release {shown(incoming)} here is another artifact (sha256 "
                f"{manifest.sha256[:12]}...) than the {holds} (sha256 "
                f"{(held.artifact_sha256 or '')[:12]}...)")
    return None


def check_rollback(conn: psycopg.Connection, target: Target, manifest: Manifest, *,
                   signed: bool, allow: bool) -> str | None:
    """Refuse a downgrade of ``target`` (read in the caller's transaction) unless ``allow``;
    what is allowed is returned, to be said."""
    problem = downgrade(held_release(latest(conn)), manifest, signed)
    if problem and not allow:
        raise DowngradeRefused(
            f"refusing to restore into {target.describe()}: {problem}. A rollback is done on "
            "purpose only: pass --allow-downgrade (on a production target with --allow-protected "
            "and the name confirmed)")
    return problem
