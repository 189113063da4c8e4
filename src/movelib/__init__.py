"""Seed, ship and verify the PostgreSQL movement library of the athlete-planning platform.

The package is usable without invoke: its entry points (:data:`ENTRY_POINTS`, which README lists
in the same words and a test compares) take plain values and ``echo`` / ``ask`` callbacks.
"""

# What a program other than `inv` calls: module and function, README's list.
ENTRY_POINTS = (
    "seed.workflow.run_seed",
    "seed.verify.verify",
    "seed.diff.diff",
    "database.migrations.migrate",
    "source.datafile.load_movements",
    "ship.dump.dump",
    "ship.restore.run_restore",
    "ship.release.release",
    "ship.promote.promote",
)

__version__ = "0.1.0"
