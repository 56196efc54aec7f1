"""``convnas export``: write the folded deploy model of a run's architecture or trained weights.

Examples:
    convnas export runs/quickstart --pareto --format yaml torchscript
    convnas export runs/quickstart --trial 12 --format onnx
    convnas export --weights runs/quickstart/trained/pareto_0012/model.pt --format torchscript
"""

from __future__ import annotations

import argparse
import pathlib
from typing import TYPE_CHECKING, Any

from convnas.errors import ConfigError

if TYPE_CHECKING:
    from convnas.search_space import Architecture

NAME = "export"
HELP = "export architectures of a run or a trained model (yaml, state_dict, torchscript, onnx)"
FORMATS = ("yaml", "state_dict", "torchscript", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=pathlib.Path, nargs="?", metavar="RUN", help="run directory")
    select = parser.add_mutually_exclusive_group(required=True)
    select.add_argument("--trial", type=int, metavar="N", help="one trial of the run")
    select.add_argument("--pareto", action="store_true", help="every Pareto/final architecture")
    select.add_argument(
        "--weights", type=pathlib.Path, metavar="MODEL_PT", help="a model.pt from convnas train"
    )
    parser.add_argument(
        "--format",
        nargs="+",
        choices=FORMATS,
        default=["state_dict"],
        help='one or more formats (onnx needs: pip install "convnas[onnx]")',
    )
    parser.add_argument(
        "--out", type=pathlib.Path, help="output directory (default: RUN/exports or beside weights)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the fresh weights of a run's architectures"
    )


def run(args: argparse.Namespace) -> int:
    from convnas.run.export import export_architecture, load_trained, run_architectures

    if args.weights is not None:
        if args.run is not None:
            raise ConfigError("give either RUN with --trial/--pareto or --weights, not both")
        model, arch = load_trained(args.weights)
        selected: list[tuple[str, Architecture, dict[str, Any] | None]] = [
            (args.weights.parent.name or "model", arch, model.state_dict())
        ]
        out = args.out or args.weights.parent / "exports"
    else:
        if args.run is None:
            raise ConfigError("RUN is required with --trial or --pareto")
        pairs = run_architectures(args.run, trial=args.trial, pareto=args.pareto)
        selected = [(name, arch, None) for name, arch in pairs]
        out = args.out or args.run / "exports"
        print(
            "note: a run holds architectures, not trained weights; these exports have freshly "
            "initialised weights (train first: convnas train ARCH, then export --weights)"
        )
    for name, arch, state in selected:
        for fmt in dict.fromkeys(args.format):
            path = export_architecture(arch, out, fmt, state_dict=state, name=name, seed=args.seed)
            print(f"{fmt:>11}  {path}")
    return 0
