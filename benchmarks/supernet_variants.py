"""Which one-shot training ranks architectures best? Supernet variants side by side.

One set of K architectures drawn uniformly from the quickstart-like space (ResNet depth 8,
widths 16/32/64, one decision per layer, the 7 quickstart candidates) is retrained
stand-alone once (seed 0; a noise subset also with seed 1), on a seeded Fashion-MNIST subset.
Each supernet variant (the supernet evaluator's settings: sampling, schedule, warm-up, BN
recalibration batches, epochs) is then trained on the same data and scores the same
architectures; Kendall's tau and Spearman's rho against the stand-alone accuracies (scipy, with
95% paired-bootstrap intervals, ``convnas.run.correlation.correlation``) are printed side by side,
with the params and MACs proxies and the seed-to-seed noise ceiling. The comparison is paired:
every variant is judged on the same architectures and the same retrains.

Data: ``apt-get install -y dataset-fashion-mnist`` (files in /usr/share/datasets/fashion-mnist)
or ``--data-root``. Retrains are cached in ``--out``/retrains.json, so a rerun with other
variants reuses them.

Usage:
    python benchmarks/supernet_variants.py --smoke          # wiring only, a minute
    python benchmarks/supernet_variants.py                  # K=20, 3-epoch retrains, 5 variants
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time
from typing import Any

import numpy as np
import torch

from convnas.costs import measure
from convnas.data import load_dataset
from convnas.io import atomic_write_text
from convnas.run.correlation import correlation
from convnas.search_space import build_model, get_space
from convnas.seeding import forked_rng
from convnas.strategies.evaluators import SupernetEvaluator
from convnas.strategies.optuna.sampling import sample_architecture
from convnas.strategies.training import train_model

CANDIDATES = ["conv_3x3", "c2sp", "do_conv_3x3", "osep_3x3", "csg_conv_3x3", "sw_sep", "conv_1x1"]
VARIANTS: dict[str, dict[str, Any]] = {
    "uniform, constant lr (default)": {},
    "uniform, cosine + 1 warm-up epoch": {"schedule": "cosine", "warmup_epochs": 1},
    "uniform, 16 BN batches": {"bn_batches": 16},
    "fair (FairNAS)": {"sampling": "fair"},
    # Fair sampling runs every candidate once per step (7 passes); this is uniform sampling
    # given the same number of passes, so the comparison separates compute from fairness.
    "uniform, 7x epochs (fair's compute)": {"epoch_factor": 7},
    "fair, cosine + warm-up, 16 BN": {
        "sampling": "fair",
        "schedule": "cosine",
        "warmup_epochs": 1,
        "bn_batches": 16,
    },
}


class _Uniform:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return choices[int(self.rng.integers(len(choices)))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--subset", type=int, default=4000, help="training images (train + val)")
    p.add_argument("--k", type=int, default=20, help="architectures ranked")
    p.add_argument("--epochs", type=int, default=3, help="stand-alone training epochs")
    p.add_argument("--supernet-epochs", type=int, default=10)
    p.add_argument("--noise-subset", type=int, default=10, help="also retrained with seed 1")
    p.add_argument("--variants", nargs="*", help="names of VARIANTS to run (default: all)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/bench_variants"))
    p.add_argument("--smoke", action="store_true", help="tiny settings: checks the wiring")
    args = p.parse_args(argv)
    if args.smoke:
        args.subset, args.k, args.epochs, args.supernet_epochs, args.noise_subset = 400, 4, 1, 1, 2
    return args


def _retrains(args, space, data, archs) -> dict[str, list[float]]:
    """Stand-alone validation accuracy per architecture (seed 0, and seed 1 for a subset)."""
    path = args.out / "retrains.json"
    key = json.dumps([args.subset, args.epochs, args.k])
    cache = json.loads(path.read_text()) if path.is_file() else {}
    cache = cache if cache.get("key") == key else {"key": key, "runs": {}}
    for i, arch in enumerate(archs):
        seeds = (0, 1) if i < args.noise_subset else (0,)
        for seed in seeds:
            name = f"{arch.network_id()}:{seed}"
            if name in cache["runs"]:
                continue
            with forked_rng(seed):
                model = build_model(arch)
            result = train_model(model, data, epochs=args.epochs, batch_size=64, seed=seed)
            cache["runs"][name] = float(result.val_accuracy)
            atomic_write_text(path, json.dumps(cache))
            print(f"  retrained {i + 1}/{len(archs)} seed {seed}: {result.val_accuracy:.4f}")
    return {
        a.network_id(): [
            cache["runs"][f"{a.network_id()}:{s}"]
            for s in (0, 1)
            if f"{a.network_id()}:{s}" in cache["runs"]
        ]
        for a in archs
    }


def _ci(c) -> str:
    return f"{c.kendall_tau:+.3f} [{c.kendall_ci[0]:+.2f}, {c.kendall_ci[1]:+.2f}]"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(
        "fashion_mnist",
        root=args.data_root,
        seed=0,
        val_fraction=0.2,
        augment=False,
        limit_train=args.subset,
        limit_test=100,
    )
    space = get_space(
        "resnet",
        candidates=CANDIDATES,
        depth=8,
        widths=[16, 32, 64],
        granularity="layer",
        num_classes=data.num_classes,
        input_shape=list(data.input_shape),
    )
    rng, archs = np.random.default_rng(0), []
    while len(archs) < args.k:
        arch = sample_architecture(_Uniform(rng), space, sample_hparams=False)
        if not any(arch.same_network(a) for a in archs):
            archs.append(arch)
    print(f"retraining {len(archs)} architectures stand-alone ({args.epochs} epochs)")
    retrained = _retrains(args, space, data, archs)
    truth = [retrained[a.network_id()][0] for a in archs]
    costs = []
    for a in archs:
        with forked_rng(0):
            costs.append(measure(build_model(a), space.input_shape))
    rows = [
        ("params (more scores higher)", correlation("params", [c.params for c in costs], truth)),
        ("MACs", correlation("macs", [c.macs for c in costs], truth)),
    ]
    pairs = [v for v in retrained.values() if len(v) == 2]
    noise = correlation("noise", [p[0] for p in pairs], [p[1] for p in pairs])
    timings = {}
    for name in args.variants or list(VARIANTS):
        settings = {"epochs": args.supernet_epochs, "batch_size": 64, "lr": 0.05, "bn_batches": 4}
        variant = dict(VARIANTS[name])
        settings["epochs"] *= variant.pop("epoch_factor", 1)
        settings.update(variant)
        run_dir = args.out / name.replace(" ", "_").replace(",", "").replace("(", "").replace(
            ")", ""
        ).replace("'", "")
        evaluator = SupernetEvaluator(**settings)
        started = time.perf_counter()
        evaluator.prepare(
            space, data, run_dir, seed=0, device=torch.device("cpu"), show_progress=False
        )
        timings[name] = time.perf_counter() - started
        scores = [evaluator.score(a) for a in archs]
        rows.append((name, correlation(name, scores, truth)))
        print(f"  {name}: tau {rows[-1][1].kendall_tau:+.3f} ({timings[name]:.0f} s)")
    lines = [
        f"# Supernet variants: ranking fidelity on Fashion-MNIST ({platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__})",
        "",
        f"K={len(archs)} uniform architectures, stand-alone {args.epochs} epochs (seed 0), "
        f"subset {args.subset} (80/20 train/val), supernet {args.supernet_epochs} epochs. "
        f"Noise ceiling (seed 0 vs 1 on {len(pairs)}): tau {_ci(noise)}.",
        "",
        "| proxy | Kendall tau [95% CI] | Spearman rho | supernet time (s) |",
        "|---|---|---|---|",
    ]
    for name, c in rows:
        # params and MACs: a larger network tends to be more accurate, so their sign is kept.
        t = f"{timings[name]:.0f}" if name in timings else "-"
        lines.append(f"| {name} | {_ci(c)} | {c.spearman_rho:+.3f} | {t} |")
    text = "\n".join(lines)
    print(text)
    atomic_write_text(args.out / "supernet_variants.md", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
