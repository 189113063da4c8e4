"""``inv verify --release`` and ``inv promote``: a release's manifest found (by version or file)
and compared with a database: the row count of each movement table, who signed what the
database restored, and the library's content (:func:`movelib.database.tables.library_sha256`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psycopg

from ..base.errors import ReleaseUsage
from ..base.text import shown
from ..database.provenance import Provenance, latest
from ..database.tables import current_counts, library_sha256
from .manifest import MANIFEST_SUFFIX, Manifest
from .release import is_version, release_manifest_path

# What a release is compared on: its library and current pointers (a restore keeps the target's
# own drafts, audit history and seed runs beside what it adds).
LIBRARY_TABLES = ("movement_library", "movement_current")
# What the comparison does not look at, said with every answer: the content, version and state
# of each library row are compared (library_sha256); these are the database's own history.
NOT_COMPARED = ("each version's published_by, published_at and ids; the drafts, the audit rows "
                "(actors, times) and seed runs")


def release_manifest(root: Path, version: str) -> tuple[str, Manifest, str]:
    """``--release``: the manifest of ``releases/<version>/`` under ``root``, or a manifest file
    named directly (``....manifest.json``, e.g. a CI artifact's); validated against its schema.
    The release's name (its version, else the file's name), the manifest and the sha256 of its
    bytes (read once)."""
    if version.endswith(MANIFEST_SUFFIX):
        path = Path(version)
        if not path.is_file():
            raise ReleaseUsage(f"{shown(version)}: no such manifest file")
        raw = path.read_bytes()
        manifest = Manifest.from_json(raw.decode("utf-8"), str(path))
        return manifest.release or path.name, manifest, hashlib.sha256(raw).hexdigest()
    if not is_version(version):
        raise ReleaseUsage(f"{shown(version, 40)} is not a release version (e.g. v1.2) nor a "
                           "manifest file")
    path = release_manifest_path(root, version)
    raw = path.read_bytes()
    return (version, Manifest.from_json(raw.decode("utf-8"), str(path)),
            hashlib.sha256(raw).hexdigest())


def compare_release(conn: psycopg.Connection, version: str, manifest: Manifest,
                    manifest_sha256: str | None = None) -> tuple[list[str], list[str]]:
    """(what matches, what differs) between the database and a release's manifest: the row
    counts of the library and its current pointers, and the library's content. A restore merges
    a release into the database's own history, so its drafts, audit rows and seed runs are not
    compared (and it says so). A signed restore is claimed only when the latest record names
    this release, this artifact and these manifest bytes (``manifest_sha256``)."""
    tables = [t for t in LIBRARY_TABLES if t in manifest.row_counts]
    counts = current_counts(conn, tables)
    differs = [f"release {version}: {t} has {'no table' if counts[t] is None else counts[t]} "
               f"rows, the release {manifest.row_counts[t]}"
               for t in tables if counts[t] != manifest.row_counts[t]]
    same = [f"release {version}: row counts match ({', '.join(tables)})"] if not differs else []
    same.append(f"release {version}: not compared (the database's own history): {NOT_COMPARED}")
    if manifest.library_sha256 is None:
        same.append(f"release {version}: content not compared (its manifest, written by movelib "
                    f"{manifest.tool_version}, has no library_sha256)")
        return same, differs
    record = latest(conn)
    if manifest.release is not None and manifest.release != version:
        differs.append(f"release {version}: the manifest found for it names release "
                       f"{shown(manifest.release, 40)}")
    # a claim only for the release the restore verified: the same artifact, under the same name
    if (isinstance(record, Provenance) and record.kind == "restore" and record.signed_by
            and record.artifact_sha256 == manifest.sha256 and record.release == version
            and manifest.release == version and manifest_sha256 is not None
            and record.manifest_sha256 == manifest_sha256):
        same.append(f"release {version}, signed by {shown(record.signed_by)} "
                    f"({shown(record.signer_key)}): this database restored it, its signature "
                    "verified then")
    else:
        held = record.describe() if isinstance(record, Provenance) else record
        same.append(f"release {version}: not restored here from a verified signature of this "
                    f"manifest (the database {held})")
    have = library_sha256(conn, recompute=True)
    if have == manifest.library_sha256:
        same.append(f"release {version}: library content matches (sha256 {have[:12]}...)")
    else:
        differs.append(f"release {version}: the library's content differs from the release's "
                       f"(library_sha256 {have[:12]}... vs {manifest.library_sha256[:12]}...; "
                       "`inv diff` names the movements)")
    return same, differs


def comparison(version: str, manifest: Manifest, manifest_sha256: str | None = None) -> tuple[
        str, Callable[[psycopg.Connection], tuple[list[str], list[str]]]]:
    """What ``verify.verify(release=...)`` takes: the release's name and the comparison of a
    database with it (:func:`compare_release`)."""
    return version, partial(compare_release, version=version, manifest=manifest,
                            manifest_sha256=manifest_sha256)
