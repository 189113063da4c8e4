"""The row a restore adds to ``movement_provenance`` (see :mod:`movelib.database.provenance`): the
artifact restored, and the release and its signers when their signatures were verified."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import psycopg
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from .manifest import Manifest
    from .sshkeys import PublicKey


class Signer(Protocol):
    """What a restore records of a signature that counted (:class:`movelib.ship.quorum.Signer`)."""

    @property
    def principal(self) -> str: ...
    @property
    def key(self) -> PublicKey: ...


def record_restore(conn: psycopg.Connection, manifest: Manifest, *, run_by: str,
                   signers: Sequence[Signer] = (), tag: str | None = None,
                   merged: dict[str, int] | None = None, manifest_sha256: str | None = None) -> None:
    """Record a restore of ``manifest``'s dump, after its rows are loaded (same transaction).

    Only what was proven is recorded: the release (and who signed it: every signer that
    counted, by principal and key) when its signatures were verified at this restore, the tag
    when ``tag`` was found pointing at that release (:func:`movelib.ship.release.proven_tag`); an
    unsigned dump is recorded by its file alone. The earlier rows stay; after a load into an
    empty database those naming a seed run lose it (the runs are the dump's); a merge keeps the
    target's runs, and records what it changed (``merged``) in ``changes``. The row's ``xact``
    (its transaction, by default) is what lets a merge remove versions (migration 0007).
    """
    signed_by = ", ".join(s.principal for s in signers) or None
    signer_keys = ", ".join(f"{s.key.short_type} {s.key.fingerprint}" for s in signers) or None
    if merged is None:
        conn.execute("UPDATE movement_provenance SET seed_run_id = NULL "
                     "WHERE seed_run_id IS NOT NULL")
    conn.execute(
        """
        INSERT INTO movement_provenance (kind, data_file, data_sha256, artifact_file,
            artifact_sha256, release, tag, source_environment, source_server_version, run_by,
            signed_by, signer_key, changes, manifest_sha256)
        VALUES ('restore', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (manifest.data_file, manifest.data_sha256, manifest.dump_file, manifest.sha256,
         manifest.release if signers else None, tag if signers else None,
         manifest.environment, manifest.source_server_version, run_by, signed_by, signer_keys,
         Jsonb(merged) if merged is not None else None, manifest_sha256 if signers else None))
