"""Search quality you can trust: ranking fidelity and NSGA-II against random search, retrained.

Protocol (Fashion-MNIST, a seeded 4,000-image subset of its training set: 3,200 train / 800
validation; the quickstart-like space: ResNet depth 8, widths 16/32/64, one decision per layer,
the 7 quickstart candidates; objectives accuracy and params). For each search seed:

1. NSGA-II with the supernet evaluator (``convnas.run_search``), then random search with the
   same trial budget and the same supernet settings and seed (so the same supernet: its
   training is seeded), so the two differ only in the sampler.
2. Both Pareto fronts are retrained stand-alone (``build_model`` + ``train_model``, the budget
   below) and the hypervolume of each *retrained* front (params against stand-alone
   accuracy) is computed on one shared normalisation per seed (``convnas.report.hypervolume``;
   minimisation, both axes scaled to [0, 1] by the union of the two fronts, reference 1.1,
   shown as a share of the box [0, 1.1]^2).
3. Ranking fidelity (``convnas.run.ranking.rank_run``) on the first ``--rank-seeds`` seeds'
   supernets: K architectures drawn uniformly, Kendall's tau and Spearman's rho with 95%
   bootstrap intervals of one-shot, params and MACs against stand-alone accuracy, and the
   noise ceiling (seed s against seed s+1 retrains of ``--noise-subset`` of them).

Everything is written under ``--out`` (one run directory per search); an interrupted benchmark
resumes: finished searches are reused, ranks resume from ``rank_progress.jsonl`` and front
retrains from ``front_retrains.json``.

Data: Debian/Ubuntu ``apt-get install -y dataset-fashion-mnist`` (files in
/usr/share/datasets/fashion-mnist), or ``--data-root`` pointing at the four IDX files.

Usage:
    python benchmarks/search_quality.py --smoke                 # a minute or two: wiring only
    python benchmarks/search_quality.py                         # full: about an hour on 2 cores
    python benchmarks/search_quality.py --seeds 0 1 2 --k 20 --epochs 3 --subset 4000
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pathlib
import statistics
import sys
from typing import Any

from convnas import run_search
from convnas.errors import ConfigError, ConvNASError
from convnas.io import read_yaml
from convnas.report.pareto import hypervolume
from convnas.run.config import parse_config
from convnas.run.export import build_seeded
from convnas.run.ranking import RankBudget, rank_run
from convnas.run.runner import load_data
from convnas.strategies.training import train_model

CANDIDATES = ["conv_3x3", "c2sp", "do_conv_3x3", "osep_3x3", "csg_conv_3x3", "sw_sep", "conv_1x1"]
SMOKE = {
    "subset": 400,
    "trials": 6,
    "population": 4,
    "supernet_epochs": 1,
    "epochs": 1,
    "max_steps": 3,
    "k": 4,
    "noise_subset": 3,
    "seeds": [0],
    "resamples": 200,
}
HV_REFERENCE = 1.1

logger = logging.getLogger("search_quality")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny settings: checks the wiring only")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds")
    p.add_argument("--subset", type=int, default=4000, help="training images (train + val)")
    p.add_argument("--trials", type=int, default=30, help="trials per search (both samplers)")
    p.add_argument("--population", type=int, default=10, help="NSGA-II population size")
    p.add_argument("--supernet-epochs", type=int, default=10, help="supernet training epochs")
    p.add_argument("--sampling", default="uniform", help="supernet path sampling: uniform, fair")
    p.add_argument("--schedule", default="constant", help="supernet lr: constant, cosine")
    p.add_argument("--warmup-epochs", type=int, default=0, help="supernet warm-up epochs")
    p.add_argument("--bn-batches", type=int, default=4, help="BN recalibration batches")
    p.add_argument("--epochs", type=int, default=3, help="stand-alone retraining epochs")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (supernet and retrain)")
    p.add_argument("--lr", type=float, default=0.05, help="stand-alone learning rate")
    p.add_argument("--max-steps", type=int, help="cap on stand-alone steps per epoch")
    p.add_argument("--k", type=int, default=20, help="architectures ranked per ranked seed")
    p.add_argument("--noise-subset", type=int, default=10, help="retrained twice (noise ceiling)")
    p.add_argument("--rank-seeds", type=int, default=1, help="rank on the first N seeds' runs")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--candidates", nargs="+", default=CANDIDATES, help="candidate operators")
    p.add_argument("--data-root", help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/search_quality"))
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        args.out = args.out.with_name(args.out.name + "_smoke")
    return args


def search_config(args: argparse.Namespace, seed: int, sampler: str) -> dict[str, Any]:
    """The run config of one search (a plain dict for ``parse_config``)."""
    strategy: dict[str, Any] = {
        "kind": "optuna" if sampler == "nsga2" else "random",
        "n_trials": args.trials,
        "objectives": ["accuracy", "params"],
        "evaluator": {
            "kind": "supernet",
            "epochs": args.supernet_epochs,
            "batch_size": args.batch_size,
            "lr": 0.05,
            "bn_batches": args.bn_batches,
            "sampling": args.sampling,
            "schedule": args.schedule,
            "warmup_epochs": args.warmup_epochs,
        },
    }
    if sampler == "nsga2":
        strategy.update(sampler="nsga2", population_size=args.population)
    return {
        "name": f"{sampler}_seed{seed}",
        "seed": seed,
        "device": args.device,
        "data": {
            "dataset": "fashion_mnist",
            "root": args.data_root,
            "val_fraction": 0.2,
            "augment": False,
            "limit_train": args.subset,
            "limit_test": 100,
        },
        "space": {
            "kind": "resnet",
            "depth": 8,
            "widths": [16, 32, 64],
            "granularity": "layer",
            "candidates": list(args.candidates),
        },
        "strategy": strategy,
        "output": {"root": str(args.out), "progress": sys.stderr.isatty(), "report": True},
    }


def search(args: argparse.Namespace, seed: int, sampler: str):
    """Run (or reuse) one search; returns its config and Pareto architectures."""
    config = parse_config(search_config(args, seed, sampler))
    run_dir = config.run_dir()
    if (run_dir / "config.yaml").is_file():
        old = read_yaml(run_dir / "config.yaml") or {}
        new = config.to_dict()
        if {k: v for k, v in old.items() if k != "output"} != {
            k: v for k, v in new.items() if k != "output"
        }:
            raise ConfigError(
                f"{run_dir} holds a search with other settings; pass another --out to run "
                "these settings (or delete the folder)",
                key="out",
            )
    done = (run_dir / "run_info.json").is_file() and "finished" in json.loads(
        (run_dir / "run_info.json").read_text()
    )
    if done:
        from convnas.run.export import run_architectures

        logger.info("%s: reusing the finished search in %s", sampler, run_dir)
        pareto = [a for _, a in run_architectures(run_dir, pareto=True)]
    else:
        logger.info("%s seed %d: searching (%d trials)", sampler, seed, args.trials)
        result = run_search(config, resume=(run_dir / "trials.csv").exists())
        pareto = [r.architecture for r in result.pareto]
    return config, pareto


def retrain_front(args, config, archs, cache_path: pathlib.Path) -> list[tuple[float, float]]:
    """``(params, stand-alone val accuracy)`` of each architecture, cached by network."""
    from convnas.costs import measure
    from convnas.strategies.base import config_hash

    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    data = None
    out = []
    for arch in archs:
        budget = [args.epochs, args.batch_size, args.lr, args.max_steps]
        key = config_hash(
            arch.to_dict()["choices"], arch.to_dict()["settings"], budget, config.seed
        )
        if key not in cache:
            data = data or load_data(config)
            model = build_seeded(arch, config.seed)
            result = train_model(
                model,
                data,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                max_steps=args.max_steps,
                seed=config.seed,
                device=args.device,
            )
            params = measure(model.cpu(), data.input_shape).params
            cache[key] = {"params": float(params), "accuracy": float(result.val_accuracy)}
            from convnas.io import write_json

            write_json(cache_path, cache)
        out.append((cache[key]["params"], cache[key]["accuracy"]))
    return out


def shared_hypervolumes(fronts: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """Hypervolume of each retrained front, (params, accuracy) normalised over their union."""
    points = [p for front in fronts.values() for p in front]
    if not points:
        return {name: math.nan for name in fronts}
    lo = (min(p[0] for p in points), min(-p[1] for p in points))
    hi = (max(p[0] for p in points), max(-p[1] for p in points))
    span = [h - low if h > low else 1.0 for low, h in zip(lo, hi, strict=True)]
    ref = (HV_REFERENCE, HV_REFERENCE)

    def scaled(p: tuple[float, float]) -> tuple[float, float]:
        return ((p[0] - lo[0]) / span[0], (-p[1] - lo[1]) / span[1])

    return {
        name: hypervolume([scaled(p) for p in front], ref) / HV_REFERENCE**2
        for name, front in fronts.items()
    }


def run_seed(args: argparse.Namespace, seed: int, rank: bool) -> dict[str, Any]:
    nsga_config, nsga_front = search(args, seed, "nsga2")
    random_config, random_front = search(args, seed, "random")
    cache = args.out / "front_retrains.json"
    fronts = {
        "nsga2": retrain_front(args, nsga_config, nsga_front, cache),
        "random": retrain_front(args, random_config, random_front, cache),
    }
    row: dict[str, Any] = {
        "seed": seed,
        "fronts": fronts,
        "hypervolume": shared_hypervolumes(fronts),
    }
    if rank:
        budget = RankBudget(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_steps=args.max_steps
        )
        result = rank_run(
            nsga_config.run_dir(),
            k=args.k,
            seed=seed,
            budget=budget,
            noise_subset=args.noise_subset,
            resamples=args.resamples,
            show_progress=sys.stderr.isatty(),
        )
        row["ranking"] = result.correlations
    return row


def _ci(value: float, ci: tuple[float, float]) -> str:
    if math.isnan(value):
        return "        -         "
    return f"{value:+.2f} [{ci[0]:+.2f},{ci[1]:+.2f}]"


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    lines = [
        f"Fashion-MNIST, {args.subset} images (80/20 train/val), resnet depth 8 16/32/64, "
        f"{len(args.candidates)} candidates; {args.trials} trials per search, supernet "
        f"{args.supernet_epochs} epoch(s) ({args.sampling} sampling, {args.schedule} lr, "
        f"{args.warmup_epochs} warm-up, {args.bn_batches} BN batches); stand-alone "
        f"{args.epochs} epoch(s)"
        + (f", max {args.max_steps} steps/epoch" if args.max_steps else ""),
        "",
        "Retrained Pareto fronts (params vs stand-alone val accuracy), shared normalisation",
        f"{'seed':>4}  {'HV NSGA-II':>10}  {'HV random':>9}  {'|front| N/R':>11}",
    ]
    for r in rows:
        hv = r["hypervolume"]
        sizes = f"{len(r['fronts']['nsga2'])}/{len(r['fronts']['random'])}"
        lines.append(f"{r['seed']:>4}  {hv['nsga2']:>10.4f}  {hv['random']:>9.4f}  {sizes:>11}")
    if len(rows) > 1:
        for name in ("nsga2", "random"):
            values = [r["hypervolume"][name] for r in rows]
            lines.append(
                f"mean HV {name}: {statistics.mean(values):.4f} "
                f"(sd {statistics.stdev(values):.4f} over {len(values)} seeds)"
            )
    ranked = [r for r in rows if "ranking" in r]
    if ranked:
        lines += [
            "",
            f"Ranking fidelity vs stand-alone accuracy, K={args.k} uniform architectures "
            "(Kendall tau / Spearman rho [95% bootstrap CI])",
            f"{'seed':>4}  {'proxy':<14} {'n':>3}  {'Kendall tau':<20}  {'Spearman rho':<20}",
        ]
        for r in ranked:
            for name, c in r["ranking"].items():
                lines.append(
                    f"{r['seed']:>4}  {name:<14} {c.n:>3}  {_ci(c.kendall_tau, c.kendall_ci)}  "
                    f"{_ci(c.spearman_rho, c.spearman_ci)}"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    rows = []
    try:
        for i, seed in enumerate(args.seeds):
            rows.append(run_seed(args, seed, rank=i < args.rank_seeds))
    except ConvNASError as exc:
        print(f"search_quality: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(table(rows, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
