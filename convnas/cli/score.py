"""``convnas score RUN ARCH...``: one-shot accuracy of architecture files on a run's supernet.

The score is the top-1 accuracy on the run's validation split with the weights the supernet
passes on (BatchNorm re-estimated), the same number the search recorded: a ranking signal, not
the accuracy the network reaches when trained on its own (see ``convnas rank``).

Example:
    convnas score runs/quickstart runs/quickstart/architectures/pareto_*.yaml
"""

from __future__ import annotations

import argparse
import pathlib

from convnas.errors import ConfigError

NAME = "score"
HELP = "score architecture files on a run's trained supernet (one-shot validation accuracy)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=pathlib.Path, metavar="RUN", help="run directory")
    parser.add_argument(
        "arch", nargs="+", type=pathlib.Path, metavar="ARCH", help="architecture files (.yaml)"
    )
    parser.add_argument("--device", help="device (default: the run's)")


def run(args: argparse.Namespace) -> int:
    from convnas.run.ranking import score_architectures

    if not args.run.is_dir():
        raise ConfigError(f"run directory {str(args.run)!r} does not exist")
    for name, accuracy in score_architectures(args.run, args.arch, device=args.device):
        print(f"{name}: one-shot accuracy {accuracy:.4f} (supernet weights, validation split)")
    return 0
