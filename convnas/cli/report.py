"""``convnas report RUN``: write ``RUN/report.html`` (self-contained) and print its path."""

from __future__ import annotations

import argparse
import pathlib

from convnas.errors import ConfigError

NAME = "report"
HELP = "write the HTML report of a run directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=pathlib.Path, metavar="RUN", help="run directory (runs/NAME)")
    parser.add_argument("--out", type=pathlib.Path, help="HTML path (default: RUN/report.html)")


def run(args: argparse.Namespace) -> int:
    from convnas.report import write_report
    from convnas.rundir import MARKER, is_run_dir

    if not args.run.is_dir():
        raise ConfigError(f"run directory {str(args.run)!r} does not exist")
    if args.out is None and not is_run_dir(args.run):
        raise ConfigError(
            f"{args.run} is not a convnas run directory (it has no {MARKER} file), so its "
            f"report.html is not written; give a run directory, or --out for the report"
        )
    print(write_report(args.run, args.out))
    return 0
