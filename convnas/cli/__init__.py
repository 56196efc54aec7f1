"""The ``convnas`` command: :mod:`convnas.cli.main` parses arguments and turns errors into one
line; each subcommand lives in a module of its own."""

from __future__ import annotations

from convnas.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
