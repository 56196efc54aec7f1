"""The ``convnas`` command line: one subcommand per module in this package.

Only the CLI prints; library code logs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence

from convnas.errors import ConvNASError

__all__ = ["build_parser", "main"]

# Each module defines NAME, HELP, add_arguments(parser) and run(args) -> int.
COMMAND_MODULES = (
    "search",
    "ops",
    "osep_plan",
    "costs",
    "train",
    "export",
    "report",
    "rank",
    "score",
    "status",
)


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already names it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _add_global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    # Before or after the subcommand: a subcommand's SUPPRESS default leaves the main one.
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log debug messages"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the traceback of an error (for bug reports)",
    )


def build_parser() -> argparse.ArgumentParser:
    from convnas import __version__

    parser = argparse.ArgumentParser(
        prog="convnas",
        description="Neural architecture search over efficient convolution operators.",
    )
    parser.add_argument("--version", action="version", version=f"convnas {__version__}")
    _add_global_flags(parser, False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"convnas.cli.{module_name}")
        sub = subparsers.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.HELP,
            formatter_class=DefaultsFormatter,
        )
        module.add_arguments(sub)
        _add_global_flags(sub, argparse.SUPPRESS)
        sub.set_defaults(_run=module.run)
    return parser


OPTUNA_COMMANDS = ("search", "export", "report")


def _quiet_optuna() -> None:
    """The application, not the library, decides what Optuna may say: per-trial INFO lines
    and "experimental" warnings are for ``-v``, tracebacks of failed trials for ``--debug``."""
    try:
        import optuna
    except ImportError:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    _strip_tracebacks(logging.getLogger("optuna"))


def _strip_tracebacks(logger: logging.Logger) -> None:
    from convnas.cli.failures import StripTracebacks

    for handler in (*logger.handlers, *logging.getLogger().handlers):
        if not any(isinstance(f, StripTracebacks) for f in handler.filters):
            handler.addFilter(StripTracebacks())


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM ends a command as Ctrl-C does: state saved, a message, resumable."""
    raise KeyboardInterrupt("SIGTERM")


def _error(command: str, message: str) -> None:
    print(f"convnas {command}: error: {' '.join(message.split())}", file=sys.stderr)


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
    if not args.debug:
        _strip_tracebacks(logging.getLogger())
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args._run(args) or 0)
    except ConvNASError as exc:
        if args.debug:
            traceback.print_exc()
        _error(args.command, str(exc))
        return 2
    except KeyboardInterrupt as exc:
        how = "SIGTERM" if str(exc) == "SIGTERM" else "Ctrl-C"
        more = (
            "; run the same command with --resume to continue" if args.command == "search" else ""
        )
        print(f"convnas {args.command}: interrupted ({how}){more}", file=sys.stderr)
        return 143 if how == "SIGTERM" else 130
    except BrokenPipeError:  # output piped into a reader that stopped early, e.g. `| head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a failure of the environment (disk, database), or a bug
        from convnas.cli.failures import describe

        if args.debug:
            traceback.print_exc()
        message = describe(exc)
        if message is not None:
            _error(args.command, message)
            return 2
        first = (str(exc).splitlines() or [""])[0][:300]
        _error(
            args.command,
            f"internal error ({type(exc).__name__}: {first}); this is a bug in convnas: "
            f"please report it with the output of --debug",
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
