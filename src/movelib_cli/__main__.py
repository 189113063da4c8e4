"""``python -m movelib_cli``: the ``inv`` command."""

from movelib_cli.program import main

main()
