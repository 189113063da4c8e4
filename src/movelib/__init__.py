"""Seed, ship and verify the PostgreSQL movement library of the athlete-planning platform.

The package is usable without invoke: ``movelib.seed.workflow.run_seed``, ``movelib.seed.verify.verify``,
``movelib.database.migrations.migrate`` and ``movelib.source.datafile.load_movements`` take plain values.
"""

__version__ = "0.1.0"
