"""Seed, ship and verify the PostgreSQL movement library of the athlete-planning platform.

The package is usable without invoke: ``movelib.workflow.run_seed``, ``movelib.verify.verify``,
``movelib.migrations.migrate`` and ``movelib.datafile.load_movements`` take plain values.
"""

__version__ = "0.1.0"
