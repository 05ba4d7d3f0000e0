"""The ``semot`` command line: one module per command group, :func:`main` dispatches."""

from semot.cli.app import main

__all__ = ["main"]
