"""``convnas train ARCH... | RUN``: retrain architectures from scratch, report their accuracy.

Each architecture is trained on the data it was searched on (its metadata's ``data``: dataset,
split, limits, options), unless a flag says otherwise; a run directory stands for its Pareto
front (``architectures/pareto_*.yaml``). Results go to ``RUN/trained/<name>/`` beside the run.
"""

from __future__ import annotations

import argparse
import ast
import logging
import pathlib
from typing import Any

from convnas.errors import ConfigError

NAME = "train"
HELP = "retrain architecture files (or a run's Pareto front) from scratch; report accuracy"

logger = logging.getLogger(__name__)

RECIPES: dict[str, dict[str, Any]] = {
    "plain": {
        "epochs": 30,
        "batch_size": 128,
        "lr": 0.05,
        "weight_decay": 5e-4,
        "drop_path": 0.0,
        "auxiliary_weight": 0.0,
        "cutout": 0,
        "grad_clip": None,
    },
    # DARTS cnn/train.py (Liu et al., 2019): the settings of its CIFAR-10 evaluation.
    "darts": {
        "epochs": 600,
        "batch_size": 96,
        "lr": 0.025,
        "weight_decay": 3e-4,
        "drop_path": 0.2,
        "auxiliary_weight": 0.4,
        "cutout": 16,
        "grad_clip": 5.0,
    },
}


def _show(value: Any) -> str:
    return "off" if value is None else str(value)


def resolve_recipe(args: argparse.Namespace) -> None:
    """Fill every training flag not given from ``--recipe``'s settings (in place)."""
    for key, value in RECIPES[args.recipe].items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "archs",
        type=pathlib.Path,
        nargs="+",
        metavar="ARCH",
        help="architecture files (.yaml), or a run directory: its Pareto front",
    )
    parser.add_argument(
        "--data", help="dataset name (default: the one the architecture was searched on)"
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
    parser.add_argument(
        "--val-fraction", type=float, help="held-out share (default: the search's, else 0.1)"
    )
    parser.add_argument(
        "--limit-train", type=int, help="at most this many training images (default: the search's)"
    )
    parser.add_argument(
        "--limit-test", type=int, help="at most this many test images (default: the search's)"
    )
    parser.add_argument("--no-augment", action="store_true", help="no training augmentation")
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="plain",
        help="training recipe: 'darts' is DARTS' CIFAR evaluation protocol (600 epochs, batch "
        "96, lr 0.025, wd 3e-4, drop-path 0.2, auxiliary weight 0.4, cutout 16, grad clip 5) "
        "for the flags not given (default: plain)",
    )
    for flag, kind, text in (
        ("--epochs", int, "training epochs"),
        ("--batch-size", int, "batch size"),
        ("--lr", float, "initial SGD lr (cosine schedule)"),
        ("--weight-decay", float, "SGD weight decay"),
        (
            "--drop-path",
            float,
            "DARTS drop-path probability (grows linearly from 0 over the epochs)",
        ),
        ("--auxiliary-weight", float, "weight of the DARTS auxiliary head's loss (0: none)"),
        ("--cutout", int, "side of the cutout square in pixels (0: none)"),
        ("--grad-clip", float, "clip the gradient norm at this value"),
    ):
        key = flag[2:].replace("-", "_")
        plain, darts = RECIPES["plain"][key], RECIPES["darts"][key]
        parser.add_argument(
            flag,
            type=kind,
            help=f"{text} (default: {_show(plain)}; with --recipe darts: {_show(darts)})",
        )
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds the weights and batch order (default: 0)"
    )
    parser.add_argument(
        "--data-seed",
        type=int,
        help="seeds the train/validation split (default: the search's, else --seed)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        help="output directory, one architecture only (default: RUN/trained/ARCH_STEM)",
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


def expand(paths: list[pathlib.Path]) -> list[pathlib.Path]:
    """Architecture files; a run directory stands for its Pareto front."""
    files: list[pathlib.Path] = []
    for path in paths:
        if path.is_dir():
            front = sorted((path / "architectures").glob("pareto_*.yaml"))
            front = front or sorted((path / "architectures").glob("darts_final.yaml"))
            if not front:
                raise ConfigError(
                    f"{path} is a directory without architectures/pareto_*.yaml or "
                    f"darts_final.yaml; pass a run directory of a finished search, or "
                    f"architecture files"
                )
            files.extend(front)
        elif not path.is_file():
            raise ConfigError(f"{path}: no such architecture file or run directory")
        else:
            files.append(path)
    return files


def data_arguments(arch: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``load_dataset`` arguments: the flags given, else the search's data, else defaults."""
    searched = arch.metadata.get("data")
    searched = dict(searched) if isinstance(searched, dict) or hasattr(searched, "keys") else {}
    dataset = args.data or searched.get("dataset") or arch.metadata.get("dataset") or "digits"
    same = dataset == searched.get("dataset")

    def pick(flag: Any, key: str, default: Any) -> Any:
        if flag is not None:
            return flag
        return searched.get(key, default) if same else default

    options = dict(searched.get("options") or {}) if same else {}
    options.update(parse_options(args.data_option))
    return {
        "name": dataset,
        "root": pick(args.data_root, "root", None),
        "download": args.download,
        "seed": pick(args.data_seed, "seed", args.seed),
        "val_fraction": pick(args.val_fraction, "val_fraction", 0.1),
        "augment": False if args.no_augment else bool(searched.get("augment", True)),
        "limit_train": pick(args.limit_train, "limit_train", None),
        "limit_test": pick(args.limit_test, "limit_test", None),
        **options,
    }


def recipe_of(args: argparse.Namespace) -> Any:
    """The :class:`~convnas.strategies.recipe.Recipe` of the flags; errors name the flag."""
    from convnas.strategies.recipe import Recipe

    try:
        return Recipe(
            drop_path=args.drop_path,
            auxiliary_weight=args.auxiliary_weight,
            cutout=args.cutout,
            grad_clip=args.grad_clip,
        )
    except ConfigError as exc:
        flag = "--" + str(exc.key).replace("_", "-")
        raise ConfigError(f"{flag} {str(exc).partition(': ')[2]}") from None


def _check(args: argparse.Namespace, files: list[pathlib.Path]) -> None:
    recipe_of(args)
    if args.val_fraction is not None and not 0 < args.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in (0, 1), but got {args.val_fraction}")
    for flag in ("seed", "data_seed"):
        value = getattr(args, flag)
        if value is not None and not 0 <= value < 2**63:
            raise ConfigError(
                f"--{flag.replace('_', '-')} must be an integer in [0, 2**63), but got {value}"
            )
    if args.out is not None:
        if len(files) > 1:
            raise ConfigError(
                f"--out names one output directory, but {len(files)} architectures were given; "
                f"leave --out out (each goes to RUN/trained/<name>/)"
            )
        if args.out.exists() and not args.out.is_dir():
            raise ConfigError(f"--out {args.out} is an existing file; give a directory")


def train_one(path: pathlib.Path, args: argparse.Namespace, cache: dict) -> dict[str, Any]:
    """Train the architecture in ``path``; write its model and result; return the result."""
    from convnas.data import load_dataset
    from convnas.io import write_json
    from convnas.run.export import build_seeded, save_trained
    from convnas.search_space import load_architecture
    from convnas.strategies.training import train_model

    arch = load_architecture(path)
    kwargs = data_arguments(arch, args)
    key = repr(sorted(kwargs.items()))
    if key not in cache:
        cache[key] = load_dataset(**kwargs)
    data = cache[key]
    if kwargs["val_fraction"] <= 0 or data.val is None:
        raise ConfigError(
            f"{path}: training scores on the validation split, but the data has none; pass "
            f"--val-fraction in (0, 1)"
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
        recipe=recipe_of(args),
    )
    out = args.out or default_out(path)
    metrics = {
        "val_accuracy": result.val_accuracy,
        "test_accuracy": result.test_accuracy,
        "dataset": data.name,
        "epochs": args.epochs,
    }
    # The data actually trained on (flags may override the search's): its mean/std go into
    # every export of this model.
    trained_arch = arch.with_metadata(data=data.settings)
    model_path = save_trained(out / "model.pt", model.cpu(), trained_arch, metrics=metrics)
    searched = dict(arch.metadata.get("metrics") or {})
    record = {
        **metrics,
        "architecture": str(path),
        "trial": arch.metadata.get("trial"),
        "searched_accuracy": searched.get("accuracy"),
        "accuracy_kind": arch.metadata.get("accuracy_kind"),
        "data": {k: v for k, v in kwargs.items() if k != "download"},
        "history": result.history,
        "steps": result.steps,
        "settings": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "seed": args.seed,
            "recipe": args.recipe,
            **recipe_of(args).to_dict(),
        },
    }
    write_json(out / "train_result.json", record)
    return record | {"model": str(model_path)}


def run(args: argparse.Namespace) -> int:
    files = expand(list(args.archs))
    resolve_recipe(args)
    _check(args, files)
    cache: dict[str, Any] = {}
    records = []
    from convnas.strategies.training import progress

    bar = progress(files, enabled=not args.no_progress and len(files) > 1, desc="architectures")
    for i, path in enumerate(bar):
        logger.info("training %d/%d: %s", i + 1, len(files), path)
        records.append(train_one(path, args, cache))
    for record in records:
        test = record["test_accuracy"]
        print(f"{record['architecture']}: {args.epochs} epoch(s) on {record['dataset']}")
        print(f"  val accuracy   {record['val_accuracy']:.4f}")
        print(f"  test accuracy  {'-' if test is None else f'{test:.4f}'}")
        if record["searched_accuracy"] is not None:
            kind = record["accuracy_kind"] or "search"
            print(f"  {kind} accuracy in the search  {record['searched_accuracy']:.4f}")
        print(f"  saved {record['model']}")
    if records:
        print(
            f"export one with: convnas export --weights {records[0]['model']} --format torchscript"
        )
    return 0
