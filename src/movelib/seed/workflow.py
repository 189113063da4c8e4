"""``inv seed``: validate, migrate, publish and verify, as one run under the target's lock."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg

from ..base.defaults import LOCK_TIMEOUT
from ..base.errors import DataFileError, DryRunRefused, MovelibError, VerificationFailed
from ..base.text import json_blocks
from ..database import db
from ..database.guard import Permission, check_protected
from ..database.migrations import apply_pending, pending_migrations, set_environment
from ..database.settings import Settings
from ..database.tables import require_schema
from ..database.target import ENV_VAR, Target
from ..source.datafile import Dataset, Progress, load_movements
from .plan import BLOCKED, KEEP, PUBLISH, Plan, make_plan, unchanged_plan
from .plan_markdown import markdown
from .publish import PublishResult, publish
from .reseed import quick_check
from .verify import GUIDE_QUERIES, VerifyReport, check

Echo = Callable[[str], None]
LISTED_MOVEMENTS = 50


@dataclass(frozen=True)
class SeedOptions:
    data_file: Path
    skip_migrations: bool = False
    lock_timeout: float = LOCK_TIMEOUT
    environment: str | None = None
    new_versions: bool = False  # publish changed movements as version n+1
    retire: bool = False  # retire current movements missing from the data file
    dry_run: bool = False  # only compute and report the plan
    output: str = "text"  # dry run: the plan as text, json or markdown (options.PLAN_FORMATS)
    permission: Permission = field(default_factory=Permission)  # for a production target


@dataclass(frozen=True)
class GuideCheck:
    """One of the deployment guide's checks, run after the seed committed."""

    name: str
    query: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class SeedOutcome:
    """What a seed did: its plan, what it published, the verification, the guide's checks and
    how to run them again. A dry run has only the plan (printed as it was asked for)."""

    plan: Plan
    published: PublishResult | None = None
    verification: VerifyReport | None = None
    guide: list[GuideCheck] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)  # the guide's checks, ready to paste

    def lines(self) -> list[str]:
        if self.published is None or self.verification is None:
            return []
        return [*_publish_lines(self.plan, self.published), *self.verification.lines(),
                *_guide_lines(self.guide, self.rerun)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.totals(),
            "published": None if self.published is None else {
                "published": self.published.published,
                "new_versions": self.published.new_versions,
                "unchanged": self.published.unchanged, "retired": self.published.retired,
                "seed_run": self.published.seed_run_id},
            "verification": None if self.verification is None else self.verification.as_dict(),
            "guide": {c.name: [dict(zip(c.headers, row, strict=True)) for row in c.rows]
                      for c in self.guide},
        }


def run_seed(settings: Settings, target: Target, options: SeedOptions, echo: Echo,
             progress: Progress | None = None,
             before_connect: Callable[[], object] | None = None) -> SeedOutcome:
    """The whole ``inv seed``. Raises a :class:`~movelib.base.errors.MovelibError` on any failure.

    Everything the run writes shares one transaction, the one that holds the target's lock
    (:func:`movelib.database.db.locked`): pending migrations, an ``--environment`` label, the publish and
    its verification, which runs before the commit. On any failure (a failed migration or
    verification, a lost connection, Ctrl-C) the target holds exactly what it held before.

    ``before_connect`` runs once the data file is valid, before any connection: the task starts
    a profile's stopped emulator there (:func:`movelib.database.emulator.start_if_stopped`), so a bad
    file leaves a stopped emulator stopped.
    """
    try:
        dataset = load_movements(options.data_file, settings.schema_file, progress=progress,
                                 limits=settings.file_limits)
    except DataFileError as exc:  # said for the seed: `inv validate` writes nothing anyway
        exc.args = (f"{exc}; nothing was written",)
        raise
    if options.output == "text":
        echo(f"validate: {dataset.display_name}: {len(dataset)} movements, valid")
    if before_connect is not None:
        before_connect()
    if options.dry_run:
        return _dry_run(settings, target, options, dataset, echo)
    schema_sha256 = hashlib.sha256(settings.schema_file.read_bytes()).hexdigest()
    said: list[str] = []  # what the run's transaction did before it could fail

    def step(line: str) -> None:
        said.append(line.split(":", 1)[0])
        echo(line)

    try:
        return _seed(settings, target, options, dataset, schema_sha256, echo, step, progress)
    except MovelibError as exc:
        if said:  # they were printed as done; the failure took them back
            exc.args = (f"{exc}\n(the {' and '.join(said)} said above were rolled back with "
                        "the seed: its one transaction commits all or nothing)",)
        raise


def _seed(settings: Settings, target: Target, options: SeedOptions, dataset: Dataset,
          schema_sha256: str, echo: Echo, step: Echo, progress: Progress | None) -> SeedOutcome:
    """The writing part of :func:`run_seed`: one transaction under the target's lock;
    ``step`` says what it did that the commit makes final."""
    with db.connect(target, task="seed", autocommit=True) as conn:
        try:
            # one transaction holds the lock, the migrations, the label, the publish and its
            # verification: behind a transaction pooler they run on one server connection, and
            # any failure leaves the target exactly as it was
            with db.locked(conn, target, task="seed", timeout=options.lock_timeout):
                check_protected(conn, target, options.permission, "seed")
                if options.skip_migrations:
                    require_schema(conn, target, hint="drop --skip-migrations (inv seed then "
                                                      "applies the schema), or run `inv migrate`")
                    echo("migrations: skipped (--skip-migrations)")
                else:
                    for line in apply_pending(conn, target, settings.migrations_dir,
                                              lock_timeout=options.lock_timeout).lines():
                        (step if line.startswith("migrations: applied") else echo)(line)
                if options.environment is not None and set_environment(conn, options.environment):
                    step(f"environment: labelled {options.environment}")
                quick = quick_check(conn, target, dataset)
                if quick is not None:  # the same file again, the library as it left it
                    echo(f"plan: {dataset.display_name} is unchanged since seed run "
                         f"{quick.seed_run} and the library still matches it: nothing to publish")
                    plan = unchanged_plan(conn, dataset)
                else:
                    plan = make_plan(conn, dataset, new_versions=options.new_versions,
                                     retire=options.retire)
                result = publish(conn, dataset, plan, schema_sha256=schema_sha256,
                                 progress=progress, target=target.again())
                report = (quick.report if quick is not None
                          else check(conn, target, dataset, extra_ok=True, content=False))
                if not report.ok:  # raising here rolls the whole run back
                    for line in report.lines():
                        echo(line)
                    raise VerificationFailed(
                        f"verification of {report.target} failed before the seed committed: "
                        f"{len(report.problems)} problem(s) (listed above); the seed was rolled "
                        "back and nothing was written")
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "the seed")
            raise
        # After the commit, as the guide runs them. The first reader of the new rows sets their
        # hint bits (with data checksums, a page image in the WAL per page): here 3.4 s of a 1M
        # seed. Read before the commit, the next command paid it instead (an unchanged reseed of
        # 100k, 0.3 to 0.5 s): the same work, moved.
        guide = _guide_checks(conn)  # the same connection, once more
    outcome = SeedOutcome(plan, result, report, guide, _rerun(target))
    for line in outcome.lines():  # the run's steps were said as they happened; then the result
        echo(line)
    return outcome


def _dry_run(settings: Settings, target: Target, options: SeedOptions, dataset: Dataset,
             echo: Echo) -> SeedOutcome:
    """The plan, read in a READ ONLY transaction that is rolled back: nothing is written."""
    with db.connect(target, task="seed", autocommit=True) as conn:
        try:
            with db.work(conn, read_only=True):
                pending = pending_migrations(conn, settings.migrations_dir)
                plan = make_plan(conn, dataset, new_versions=options.new_versions,
                                 retire=options.retire, with_diffs=True)
        except psycopg.Error as exc:
            db.raise_sql_error(target, exc, "the dry run")
            raise
    if options.output == "json":  # written while its movements are made, a block at a time
        for block in json_blocks({"target": target.masked(), "data_file": dataset.display_name,
                                  "pending_migrations": pending, **plan.document()}):
            echo(block)
    elif options.output == "markdown":
        echo(markdown(plan, target=target.describe(), data_file=dataset.display_name,
                      pending=pending))
    else:
        echo("dry run: nothing is written")
        if pending:
            echo(f"migrations: {len(pending)} pending, would apply ({', '.join(pending)})")
        for line in plan.lines():
            echo(line)
    blocked = plan.count(BLOCKED)
    if blocked:  # the plan is printed whole; the answer is "the seed would be refused"
        raise DryRunRefused(
            f"dry run: the seed would be refused: {blocked} published movement(s) "
            f"differ from {dataset.display_name} (listed above); `inv seed --file "
            f"{dataset.display_name}{target.again()} --new-versions` publishes them as new "
            "versions", plan)
    return SeedOutcome(plan)


def _publish_lines(plan: Plan, result: PublishResult) -> list[str]:
    run = f" (seed run {result.seed_run_id})" if result.seed_run_id else "; nothing written"
    lines = [f"seed: {result.published} published ({result.new_versions} new versions), "
             f"{result.unchanged} unchanged, {len(result.retired)} retired{run}"]
    if result.published <= LISTED_MOVEMENTS:
        for change in plan.of(PUBLISH):
            note = f" (supersedes v{change.current_version})" if change.current_version else ""
            lines.append(f"  PUBLISHED {change.slug} v{change.next_version}{note}")
    lines += [f"  RETIRED   {slug}" for slug in result.retired[:LISTED_MOVEMENTS]]
    kept = plan.count(KEEP)
    if kept:
        lines.append(f"  {kept} current movement(s) are not in the data file and were kept "
                     f"(--retire retires them): {', '.join(c.slug for c in islice(plan.of(KEEP), 10))}"
                     + (" ..." if kept > 10 else ""))
    return lines


def _guide_checks(conn: psycopg.Connection) -> list[GuideCheck]:
    """The guide's verification queries, run after the seed committed."""
    checks = []
    for name, query in GUIDE_QUERIES.items():
        cur = conn.execute(query)
        checks.append(GuideCheck(name, query, [c.name for c in cur.description or []],
                                 [[str(v) for v in row] for row in cur.fetchall()]))
    return checks


def _rerun(target: Target) -> list[str]:
    """How to run the guide's checks again on ``target``, ready to paste."""
    first: list[str] = []
    if target.source == "profile" and target.profile is not None:
        how = f"inv db.psql --profile {target.profile.name}"
    elif target.source.startswith("--dsn env:"):  # the variable's name, as it was typed
        how = f"inv db.psql{target.again()}"
    elif target.source == "--dsn":  # a masked DSN cannot be pasted; a variable can
        how = f"inv db.psql --dsn env:{ENV_VAR}"
        first = [f"  (first: export {ENV_VAR}='<the DSN you gave --dsn>')"]
    else:
        how = "inv db.psql"  # resolves PLANNING_DATABASE_URL (.env too) again
    return [*first, *(f'  {how} -c "{query}"' for query in GUIDE_QUERIES.values())]


def _guide_lines(checks: list[GuideCheck], rerun: list[str]) -> list[str]:
    from ..base.report import table

    lines = ["", "Verification (the deployment guide's checks):"]
    for guide in checks:
        lines += [f"  -- {guide.name}", *(f"  {line}" for line in table(guide.headers, guide.rows))]
    return [*lines, "Run them yourself with:", *rerun]
