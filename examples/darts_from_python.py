"""A short DARTS search from Python, in both search spaces, on CIFAR-10 (or any dataset).

    python examples/darts_from_python.py --data-root /path/to/cifar10 [--epochs 2]

Prints the derived architecture of each space and its costs (params, MACs, training memory).
"""

from __future__ import annotations

import argparse
import time

from convnas.data import load_dataset
from convnas.search_space import get_space
from convnas.strategies.darts import DartsStrategy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", required=True, help="folder with cifar-10-batches-py")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--out", default="runs/darts_from_python")
    args = parser.parse_args()
    data = load_dataset("cifar10", root=args.data_root, val_fraction=0.5, seed=0)
    spaces = {
        "resnet": get_space(
            "resnet",
            depth=20,
            granularity="block",
            num_classes=10,
            candidates=["conv_3x3", "c2sp", "osep_3x3", "do_conv_3x3", "csg_conv_3x3"],
        ),
        "darts": get_space(
            "darts",
            channels=8,
            layers=5,
            num_classes=10,
            candidates=[
                "none",
                "max_pool_3x3",
                "avg_pool_3x3",
                "skip_connect",
                "sep_conv_3x3",
                "dil_conv_3x3",
                "c2sp",
                "osep_3x3",
            ],
        ),
    }
    for name, space in spaces.items():
        strategy = DartsStrategy(
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=64,
            order=1,
            progress=True,
        )
        started = time.perf_counter()
        result = strategy.search(space, data, f"{args.out}/{name}")
        arch, metrics = result.best.architecture, result.best.metrics
        print(
            f"\n== {name} space: {time.perf_counter() - started:.0f} s, "
            f"{args.epochs} epochs x {args.steps_per_epoch} steps"
        )
        for choice in arch.choices:
            print(f"  {choice.decision:>14}: {choice.label}")
        print(
            f"  supernet val accuracy {metrics['supernet_val_accuracy']:.3f}; "
            f"params {metrics['params']:,.0f}, MACs {metrics['macs']:,.0f} (per image), "
            f"training memory {metrics['train_memory'] / 2**20:.1f} MiB at batch 64"
        )


if __name__ == "__main__":
    main()
