"""``python -m tillbridge.cli``: the same as the ``tillbridge`` command."""

from tillbridge.cli.main import main

main()
