"""``convnas search CONFIG``: run a search described by a YAML file."""

from __future__ import annotations

import argparse
import os
import pathlib

from convnas.errors import SearchFailedError

NAME = "search"
HELP = "run a search from a YAML config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=pathlib.Path, help="YAML config (see configs/)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in the config's run directory"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local worker processes on one study (Optuna strategies)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. strategy.n_trials=50",
    )
    parser.add_argument("--name", help="run name (default: the config's name or file stem)")


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}{unit}"
    return f"{value:.0f}{unit}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.2f}MiB"


def summary_lines(result, run_dir: pathlib.Path) -> list[str]:
    members = result.pareto or result.results
    # A proposal of a network an earlier trial scored (duplicate_of) is no new architecture.
    distinct = len({r.architecture.network_id() for r in result.results})
    repeats = result.info.get("repeats", 0) + len(result.results) - distinct
    lines = [
        f"{result.strategy} search finished: {distinct} distinct architecture(s) evaluated"
        + (f", {repeats} repeated proposal(s) answered from earlier trials" if repeats else "")
        + (f", {result.info['failed']} failed" if result.info.get("failed") else "")
    ]
    lines.append("")
    lines.append("Pareto front" if result.pareto else "Result")
    header = (
        f"{'trial':>5}  {'accuracy':>8}  {'params':>8}  {'MACs':>8}  {'train mem':>9}  operators"
    )
    lines.append(header)
    for r in sorted(
        members, key=lambda r: -r.metrics.get("accuracy", r.metrics.get("supernet_val_accuracy", 0))
    ):
        m = r.metrics
        acc = m.get("accuracy", m.get("supernet_val_accuracy"))
        ops = " ".join(f"{k}:{v}" for k, v in r.architecture.ops_used().items())
        lines.append(
            f"{'-' if r.trial is None else r.trial:>5}  "
            f"{'-' if acc is None else f'{acc:.4f}':>8}  {_fmt(m.get('params')):>8}  "
            f"{_fmt(m.get('macs')):>8}  {_mib(m.get('train_memory')):>9}  {ops}"
        )
    lines.append(
        "(MACs are multiply-accumulates per image; train mem in MiB (2**20 bytes) at the "
        "configured batch;"
    )
    lines.append(" operators as name:count over the searched positions)")
    lines.append("")
    lines.append(f"run directory: {run_dir}")
    for name in ("architectures", "trials.csv", "report.html", "alphas.json", "config.yaml"):
        if (run_dir / name).exists():
            lines.append(f"  {name}")
    return lines


def run(args: argparse.Namespace) -> int:
    from convnas.run.config import load_config
    from convnas.run.runner import run_search

    overrides = list(args.overrides)
    if args.name:
        overrides.append(f"name={args.name}")
    config = load_config(args.config, overrides)
    result = run_search(config, resume=args.resume, workers=args.workers)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        if not result.results:
            info = result.info
            raise SearchFailedError(
                f"no architecture was evaluated successfully ({info.get('failed', 0)} trial(s) "
                f"failed, {info.get('pruned', 0)} pruned); the reasons are in the fail_reason "
                f"column of {config.run_dir() / 'trials.csv'}"
            )
        print("\n".join(summary_lines(result, config.run_dir())))
    return 0
