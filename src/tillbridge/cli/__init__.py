"""The ``tillbridge`` command line, one module per sub-app (see :mod:`.main`)."""

from tillbridge.cli.main import app, main

__all__ = ["app", "main"]
