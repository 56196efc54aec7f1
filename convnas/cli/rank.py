"""``convnas rank RUN``: how faithfully does the run's supernet rank architectures?

Scores K architectures on the run's trained supernet, retrains each stand-alone with a small
budget, and prints Kendall's tau and Spearman's rho (with bootstrap confidence intervals) of the
one-shot accuracy, params and MACs against the stand-alone accuracy, plus the seed-to-seed noise
ceiling. Writes ``RUN/rank.json`` and ``RUN/rank.csv``; an interrupted rank resumes.

Examples:
    convnas rank runs/quickstart --k 20 --epochs 3 --noise-subset 8
    convnas rank runs/quickstart --source trials --epochs 5
    convnas rank runs/quickstart --arch runs/quickstart/architectures/pareto_*.yaml
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import yaml

from convnas.errors import ConfigError

NAME = "rank"
HELP = "measure the ranking fidelity of a run's supernet against stand-alone retraining"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=pathlib.Path, metavar="RUN", help="run directory")
    parser.add_argument(
        "--source",
        choices=("uniform", "trials"),
        default="uniform",
        help="architectures drawn uniformly from the space, or the run's trials",
    )
    parser.add_argument(
        "--arch", nargs="+", type=pathlib.Path, metavar="ARCH", help="rank these files instead"
    )
    parser.add_argument(
        "--k", type=int, help="architectures to rank (uniform: default 20; trials: default all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling and first retrain seed")
    parser.add_argument("--epochs", type=int, default=3, help="stand-alone training epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="stand-alone batch size")
    parser.add_argument("--lr", type=float, default=0.05, help="stand-alone SGD learning rate")
    parser.add_argument("--max-steps", type=int, help="cap on training steps per epoch")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    parser.add_argument(
        "--noise-subset",
        type=int,
        default=0,
        metavar="N",
        help="retrain the first N again with seed+1 for the noise ceiling (0: skip)",
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the run's data setting for retraining, e.g. limit_train=2000",
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level")
    parser.add_argument("--device", help="device (default: the run's)")
    parser.add_argument(
        "--fresh", action="store_true", help="discard retrains of a different rank configuration"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_data(items: list[str]) -> dict[str, object]:
    """``["limit_train=2000"]`` -> ``{"limit_train": 2000}`` (values parsed as YAML)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--data must be KEY=VALUE, but got {item!r}")
        out[key] = yaml.safe_load(value) if value.strip() else None
    return out


def _num(value: float | None, digits: str = "+.2f") -> str:
    return "-" if value is None or math.isnan(value) else format(value, digits)


def _ci(ci: tuple[float, float]) -> str:
    return f"[{_num(ci[0])}, {_num(ci[1])}]"


def result_lines(result) -> list[str]:
    from convnas.run.correlation import LABELS

    s = result.settings
    budget = s["budget"]
    lines = [
        f"ranked {s['k']} architecture(s) ({s['source']}, seed {s['seed']}): one-shot vs "
        f"stand-alone ({budget['epochs']} epoch(s), batch {budget['batch_size']}, lr "
        f"{budget['lr']}); {result.retrained} retrain(s) run, {result.reused} reused",
        "",
        f"{'proxy':<42} {'n':>3}  {'Kendall tau':>11} {'CI':>15}  {'Spearman rho':>12} {'CI':>15}",
    ]
    for name, c in result.correlations.items():
        lines.append(
            f"{LABELS.get(name, name):<42} {c.n:>3}  {_num(c.kendall_tau):>11} "
            f"{_ci(c.kendall_ci):>15}  {_num(c.spearman_rho):>12} {_ci(c.spearman_ci):>15}"
        )
    confidence = next(iter(result.correlations.values())).confidence
    lines += [
        f"({confidence:.0%} paired-bootstrap intervals; accuracies on the run's validation split;",
        " params and MACs are correlated with stand-alone accuracy as they are)",
        "",
        *[f"wrote {path}" for path in result.files],
    ]
    return lines


def run(args: argparse.Namespace) -> int:
    from convnas.run.ranking import RankBudget, rank_run

    if not args.run.is_dir():
        raise ConfigError(f"run directory {str(args.run)!r} does not exist")
    result = rank_run(
        args.run,
        k=args.k,
        source="files" if args.arch else args.source,
        architectures=args.arch,
        seed=args.seed,
        budget=RankBudget(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            max_steps=args.max_steps,
            weight_decay=args.weight_decay,
        ),
        noise_subset=args.noise_subset,
        data=parse_data(args.data),
        resamples=args.resamples,
        confidence=args.confidence,
        device=args.device,
        fresh=args.fresh,
        show_progress=not args.no_progress and sys.stderr.isatty(),
    )
    print("\n".join(result_lines(result)))
    return 0
