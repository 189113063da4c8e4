"""``inv promote``: release vX goes into one target only once another holds exactly vX.

The deployment guide's "verify in staging, then release to production" as one step. The
release is ``releases/<version>/`` under the project root; its manifest is read once, its dump
and signatures checked as every restore checks them (:func:`movelib.ship.restore.prepare`), before
any connection. Then the source (``--from``) is read only: it must hold exactly that release,
by content (every library version's hash recomputed from its document and digested, as ``inv
verify --release`` does, against the manifest's ``library_sha256``; the row counts) and by
provenance (its latest record is the restore of that artifact, from a verified signature).
Only then is the release restored into ``--to``, with every rule of a restore: the target's
trust, the threshold, no silent rollback, the preview, the protected-target confirmation.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from ..base.errors import PromotionRefused
from ..base.text import shown, shown_path
from ..database import db
from ..database.provenance import Provenance, latest
from ..database.settings import Settings
from ..database.tables import require_content_checks, require_schema
from ..database.target import Target
from ..source.datafile import Progress
from .manifest import Manifest, dump_for
from .release import release_manifest_path
from .release_check import compare_release
from .restore import Ask, Echo, finish, prepare
from .restore_plan import RestoreOptions
from .restore_write import RestoreResult
from .rollback import held_release


def check_source(source: Target, version: str, manifest: Manifest,
                 manifest_sha256: str | None = None) -> list[str]:
    """What shows that ``source`` holds exactly release ``version`` (``manifest``), or a
    :class:`PromotionRefused` naming every difference. Read only."""
    with db.connect(source, task="promote", autocommit=True) as conn:
        try:
            with db.work(conn, read_only=True):
                require_schema(conn, source)
                require_content_checks(conn, source)
                same, differs = compare_release(conn, version, manifest, manifest_sha256)
                record = latest(conn)
        except psycopg.Error as exc:
            db.raise_sql_error(source, exc, "the promotion's check of its source")
            raise
    problems = list(differs)
    if manifest.library_sha256 is None:
        problems.append(f"release {version}'s manifest has no library_sha256, so its content "
                        "cannot be compared: cut the release again with this movelib")
    held = held_release(record)
    if (held is None or held.release != version or held.artifact_sha256 != manifest.sha256
            or held.manifest_sha256 != manifest_sha256):
        says = record.describe() if isinstance(record, Provenance) else record
        problems.append(f"its provenance does not say it holds release {version} from a verified "
                        f"signature (it {shown(says, 300)})")
    if problems:
        raise PromotionRefused(
            f"refusing to promote release {version}: {source.describe()} does not hold exactly "
            f"it: " + "; ".join(problems) + ". Restore the release there first and verify it "
            f"(`inv verify --release {version}{source.again()}`)")
    return same


def release_dump(root: Path, version: str) -> Path:
    """The dump of release ``version`` (``releases/<version>/``), the file a promotion restores."""
    return dump_for(release_manifest_path(root, version))


def promote(settings: Settings, version: str, source: Target, destination: Target,
            options: RestoreOptions, echo: Echo, ask: Ask,
            progress: Progress | None = None) -> RestoreResult | None:
    """Restore release ``version`` into ``destination`` once ``source`` holds exactly it;
    ``options.dump_file`` is that release's dump (:func:`release_dump`)."""
    manifest_file = release_manifest_path(settings.root, version)
    if options.dump_file != dump_for(manifest_file).absolute():
        raise ValueError(f"promote restores {dump_for(manifest_file)}, not {options.dump_file}")
    prepared = prepare(settings, destination, options, echo, progress)  # no connection yet
    manifest = prepared.dump.manifest
    if manifest.release != version:
        raise PromotionRefused(f"{shown_path(manifest_file)} is the manifest of release "
                               f"{shown(manifest.release)}, not {version}; refusing to promote")
    from ..database.emulator import start_if_stopped

    echo(f"from: {source.describe()}")
    start_if_stopped(source, settings.emulator_for, echo)
    for line in check_source(source, version, manifest, prepared.dump.manifest_sha256):
        echo(f"from: {line}")
    return finish(settings, destination, prepared, options, echo, ask, progress)
