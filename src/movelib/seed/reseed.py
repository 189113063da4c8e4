"""The unchanged reseed: when a seed meets the same file as the last seed that wrote something,
and the database's own summary shows the library as that seed left it, the plan (nothing to
publish) and the report are known without reading every movement back."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import psycopg

from ..database.tables import PER_VERSION, RETIRED, ROWS_PER_VERSION
from ..database.target import Target
from ..source.datafile import Dataset
from .verify import CURRENT_DIGEST, VerifyReport, file_digest

# An unchanged reseed's summary of the library, in one statement: the counts verify prints, the
# latest seed run that wrote something, and the current movements as a count and a sha256 over
# their "slug<TAB>content_hash" lines in byte order.
_SUMMARY = f"""
SELECT (SELECT count(*) FROM movement_library),
       (SELECT count(*) FROM movement_current),
       (SELECT count(*) FROM movement_staging),
       (SELECT count(*) FROM movement_staging WHERE status = 'published'),
       (SELECT coalesce(json_object_agg(action, n), '{{}}')::text
          FROM (SELECT action, count(*) AS n FROM movement_audit_log GROUP BY action) a),
       (SELECT coalesce(json_object_agg(version, n ORDER BY version), '{{}}')::text
          FROM ({ROWS_PER_VERSION}) v),
       (SELECT array[id::text, data_sha256] FROM movement_seed_run
         WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1),
       c.n, c.digest
  FROM (SELECT count(*) AS n, {CURRENT_DIGEST} AS digest FROM movement_library_current) c
"""
QUICK_SCOPE = ("same file as seed run {run} (sha256); the current movements and their content "
               "hashes, the drafts and the audit rows by action match it. Each audit chain's "
               "order and approvers were not re-read (`inv verify` reads everything)")


@dataclass
class QuickCheck:
    """An unchanged reseed, vouched for by the database's summary instead of a full pass."""

    seed_run: int
    report: VerifyReport


def quick_check(conn: psycopg.Connection, target: Target, dataset: Dataset) -> QuickCheck | None:
    """The library as the last seed of this same file left it, or None (then the full plan and
    verification run). Read only, a handful of aggregates; every condition must hold:

    * the latest seed run that wrote something was of a file with this file's sha256;
    * the current movements are exactly the file's, each with the file's content hash (a count
      and a sha256 over "slug, content hash" lines computed by the database);
    * every library row is counted with a published draft, and the audit log holds one CREATED,
      one REVIEW_SUBMITTED, two APPROVED and one PUBLISHED row per library row.
    """
    row = conn.execute(
        "SELECT to_regclass('movement_current') IS NOT NULL "
        "AND to_regclass('movement_seed_run') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    (library, current, staging, published, actions, versions, last, n,
     digest) = conn.execute(_SUMMARY).fetchone() or (None,) * 9
    if last is None or last[1] != dataset.sha256 or n != len(dataset):
        return None
    if digest != file_digest(dataset):
        return None
    by_action: dict[str, int] = orjson.loads(actions)
    expected = {action: n * library for action, n in PER_VERSION.items()}
    if published != library or {k: by_action.get(k, 0) for k in expected} != expected \
            or set(by_action) - {*expected, RETIRED}:
        return None
    report = VerifyReport(target=target.masked(), checked_file=dataset.display_name,
                          others_kept=0, scope=QUICK_SCOPE.format(run=last[0]))
    report.counts = {"library": library, "current": current, "staging": staging,
                     "audit_log": sum(by_action.values())}
    report.audit_by_action = dict(sorted(by_action.items()))
    report.library_versions = {int(v): k for v, k in orjson.loads(versions).items()}
    return QuickCheck(int(last[0]), report)
