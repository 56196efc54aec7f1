"""``convnas ops``: the operator registry as a table or JSON."""

from __future__ import annotations

import argparse
import json

NAME = "ops"
HELP = "list the registered operators"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name filter")
    parser.add_argument("--kind", choices=("conv", "block"), help="only operators of this kind")
    parser.add_argument("--family", help="only operators of this family")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from convnas.operators import list_operators, operator_info

    infos = [
        operator_info(n) for n in list_operators(args.pattern, kind=args.kind, family=args.family)
    ]
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    rows = [
        (
            "name",
            "family",
            "kind",
            "strides",
            "in!=out",
            "fold",
            "gpu",
            "TorchScript",
            "search space",
        )
    ]
    for i in infos:
        space = " ".join(f"{k}={list(v)}" for k, v in i.search_space.items()) or "-"
        rows.append(
            (
                i.name,
                i.family,
                i.kind,
                ",".join(map(str, i.strides)),
                "yes" if i.channel_change else "no",
                "yes" if i.foldable else "no",
                "yes" if i.gpu_kernel else "no",
                "yes" if i.scriptable else f"no ({i.script_note})",
                space,
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    print(f"\n{len(infos)} operator(s)")
    return 0
