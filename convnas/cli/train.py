"""``convnas train ARCH``: retrain an architecture from scratch and report its test accuracy."""

from __future__ import annotations

import argparse
import ast
import pathlib
from typing import Any

from convnas.errors import ConfigError

NAME = "train"
HELP = "retrain an architecture file from scratch; save model.pt and report test accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arch", type=pathlib.Path, metavar="ARCH", help="architecture file (.yaml)")
    parser.add_argument(
        "--data", help="dataset name (default: the architecture's dataset, else digits)"
    )
    parser.add_argument("--data-root", help="where the dataset files are")
    parser.add_argument("--download", action="store_true", help="download missing data (CIFAR)")
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, e.g. num_classes=4 (values are Python literals)",
    )
    parser.add_argument("--val-fraction", type=float, default=0.1, help="held-out share")
    parser.add_argument("--limit-train", type=int, help="use at most this many training images")
    parser.add_argument("--limit-test", type=int, help="use at most this many test images")
    parser.add_argument("--no-augment", action="store_true", help="no training augmentation")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size")
    parser.add_argument("--lr", type=float, default=0.05, help="initial SGD learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, split and order")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--out", type=pathlib.Path, help="output directory (default: RUN/trained/ARCH_STEM)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["num_classes=4", "input_shape=[3,8,8]"]`` -> ``{"num_classes": 4, ...}``."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--data-option must be KEY=VALUE, but got {item!r}")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


def default_out(arch_path: pathlib.Path) -> pathlib.Path:
    parent = arch_path.parent
    root = parent.parent if parent.name == "architectures" else parent
    return root / "trained" / arch_path.stem


def check_fits(arch: Any, data: Any) -> None:
    """The architecture's input shape and classes must match the dataset's."""
    shape = [int(s) for s in arch.settings.get("input_shape") or []]
    classes = arch.settings.get("num_classes")
    if shape != list(data.input_shape) or classes != data.num_classes:
        raise ConfigError(
            f"the architecture expects input {shape} and {classes} classes, but dataset "
            f"{data.name!r} gives {list(data.input_shape)} and {data.num_classes}; choose the "
            "dataset the architecture was searched on (--data, --data-option)"
        )


def run(args: argparse.Namespace) -> int:
    from convnas.data import load_dataset
    from convnas.io import write_json
    from convnas.run.export import build_seeded, save_trained
    from convnas.search_space import load_architecture
    from convnas.strategies.training import train_model

    arch = load_architecture(args.arch)
    dataset = args.data or arch.metadata.get("dataset") or "digits"
    data = load_dataset(
        dataset,
        root=args.data_root,
        download=args.download,
        seed=args.seed,
        val_fraction=args.val_fraction,
        augment=not args.no_augment,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        **parse_options(args.data_option),
    )
    check_fits(arch, data)
    model = build_seeded(arch, args.seed)
    result = train_model(
        model,
        data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        device=args.device,
        evaluate_test=True,
        show_progress=not args.no_progress,
    )
    out = args.out or default_out(args.arch)
    metrics = {
        "val_accuracy": result.val_accuracy,
        "test_accuracy": result.test_accuracy,
        "dataset": data.name,
        "epochs": args.epochs,
    }
    path = save_trained(out / "model.pt", model.cpu(), arch, metrics=metrics)
    settings = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
    write_json(
        out / "train_result.json",
        {
            **metrics,
            "history": result.history,
            "steps": result.steps,
            "settings": {
                k: str(v) if isinstance(v, pathlib.Path) else v for k, v in settings.items()
            },
        },
    )
    test = "-" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    print(f"{args.arch}: {args.epochs} epoch(s) on {data.name}")
    print(f"  val accuracy   {result.val_accuracy:.4f}")
    print(f"  test accuracy  {test}")
    print(f"saved {path} and {path.with_name('architecture.yaml')}")
    print(f"export it with: convnas export --weights {path} --format torchscript")
    return 0
