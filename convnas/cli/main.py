"""The ``convnas`` command line: one subcommand per module in this package.

Only the CLI prints; library code logs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from convnas.errors import ConvNASError

__all__ = ["build_parser", "main"]

# Each module defines NAME, HELP, add_arguments(parser) and run(args) -> int.
COMMAND_MODULES = ("search", "ops", "osep_plan", "costs", "train", "export", "report")


def build_parser() -> argparse.ArgumentParser:
    from convnas import __version__

    parser = argparse.ArgumentParser(
        prog="convnas",
        description="Neural architecture search over efficient convolution operators.",
    )
    parser.add_argument("--version", action="version", version=f"convnas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"convnas.cli.{module_name}")
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


OPTUNA_COMMANDS = ("search", "export", "report")


def _quiet_optuna() -> None:
    """The application, not the library, decides what Optuna may say: per-trial INFO lines
    and "experimental" warnings are for ``-v``."""
    try:
        import optuna
    except ImportError:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose and args.command in OPTUNA_COMMANDS:
        _quiet_optuna()
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ConvNASError as exc:
        print(f"convnas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"convnas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early, e.g. `| head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
