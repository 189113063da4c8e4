"""The command line: everything that knows invoke, beside the ``movelib`` package (which never
imports it).

* ``program``: the ``inv`` command, invoke's Program with the exit-code contract for what invoke
  parses itself, and the reading of a task's part of the command line (``--help`` after a task,
  misspelt flags, invoke's own flags refused).
* ``running``: how a task runs: one letter per meaning, printing through one door (passwords
  masked, control characters escaped), errors as one line and an exit code, the target first.
* ``options``: the help texts and the parsing of option values.

``tasks.py`` at the project's root is the list of tasks, each a few lines over these.
"""
