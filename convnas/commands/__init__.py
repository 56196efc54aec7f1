"""Subcommands of the ``convnas`` command line, one module each."""
