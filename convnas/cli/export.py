"""``convnas export``: write the folded deploy model of a run's architecture or trained weights.

Examples:
    convnas export runs/quickstart --pareto --format yaml torchscript
    convnas export runs/quickstart --trial 12 --format onnx
    convnas export --weights runs/quickstart/trained/pareto_0012/model.pt --format torchscript
    convnas export runs/quickstart/architectures/pareto_0012.yaml --format torchscript

Without --weights the exported networks have freshly initialised (untrained) weights. The
TorchScript/ONNX exports expect normalised input, as in training, unless --normalize: then they
take raw pixels in [0, 1] and apply the recorded mean/std (metadata.data) first.
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
    parser.add_argument(
        "run",
        type=pathlib.Path,
        nargs="?",
        metavar="RUN|ARCH",
        help="run directory (with --trial/--pareto), or an architecture file (.yaml)",
    )
    select = parser.add_mutually_exclusive_group()
    select.add_argument("--trial", type=int, metavar="N", help="one trial of the run")
    select.add_argument("--pareto", action="store_true", help="every Pareto/final architecture")
    select.add_argument(
        "--weights",
        type=pathlib.Path,
        metavar="MODEL_PT",
        help="a model.pt from convnas train; with ARCH also a plain state dict of its network",
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
    parser.add_argument(
        "--normalize",
        action="store_true",
        help="torchscript/onnx take raw pixels in [0, 1] and normalise them with the recorded "
        "mean/std (default: off, they expect normalised input as in training; state_dict is "
        "the bare network either way)",
    )


Selection = list[tuple[str, "Architecture", "dict[str, Any] | None"]]


def _selected(args: argparse.Namespace) -> tuple[Selection, pathlib.Path]:
    from convnas.run.export import load_trained, load_weights, run_architectures
    from convnas.search_space import load_architecture

    if args.run is not None and args.run.is_file():
        if args.trial is not None or args.pareto:
            raise ConfigError(f"--trial and --pareto select from a run directory, not {args.run}")
        arch = load_architecture(args.run)
        state = None if args.weights is None else load_weights(args.weights, arch)
        return [(args.run.stem, arch, state)], args.out or args.run.parent / "exports"
    if args.weights is not None:
        if args.run is not None:
            raise ConfigError("give either RUN with --trial/--pareto or --weights, not both")
        model, arch = load_trained(args.weights)
        name = args.weights.parent.name or "model"
        return [(name, arch, model.state_dict())], args.out or args.weights.parent / "exports"
    if args.run is None:
        raise ConfigError("give a run directory with --trial/--pareto, an ARCH.yaml, or --weights")
    if args.trial is None and not args.pareto:
        raise ConfigError(f"{args.run} is a run directory: select --trial N or --pareto")
    pairs = run_architectures(args.run, trial=args.trial, pareto=args.pareto)
    return [(name, arch, None) for name, arch in pairs], args.out or args.run / "exports"


def run(args: argparse.Namespace) -> int:
    from convnas.run.export import export_architecture

    selected, out = _selected(args)
    if all(state is None for _, _, state in selected):
        print(
            "note: these exports have freshly initialised (untrained) weights; a run holds "
            "architectures, not trained weights (train first: convnas train ARCH, then export "
            "--weights)"
        )
    for name, arch, state in selected:
        for fmt in dict.fromkeys(args.format):
            path = export_architecture(
                arch,
                out,
                fmt,
                state_dict=state,
                name=name,
                seed=args.seed,
                normalize=args.normalize,
            )
            print(f"{fmt:>11}  {path}")
    return 0
