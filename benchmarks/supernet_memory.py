"""Memory of the DARTS search supernet in its memory modes, side by side.

The DARTS CIFAR-10 search setting (8 cells, 16 initial channels, batch 64, 32x32), with the 8
DARTS primitives and again with convnas's operators added. For each candidate set, the rows are
plain / recompute / partial channels K=4 / recompute + partial, each timing full first-order
DARTS steps (architecture step on a validation batch, then SGD-momentum weight step) and
reporting:

- peak memory: ``torch.cuda.max_memory_allocated`` growth on CUDA; on CPU the growth of the peak
  resident set size of a fresh subprocess per row (``ru_maxrss`` after the steps minus
  ``ru_maxrss`` once the supernet, optimizers and batches exist), so rows do not share a heap;
- estimate: convnas's cost model on the meta device (``measure(...).peak_memory_bytes`` minus
  the weights, which are resident before the baseline) at the batch size;
- step time: median over the timed steps, after warm-up;
- the ratios of each row to plain.

It then checks, in float64 at a smaller setting (said in the output), that 5 first-order steps
give identical alphas in plain and recompute mode (and in partial with and without recompute).

Usage:
    python benchmarks/supernet_memory.py [--device cpu|cuda] [--batch-size 64] [--steps 3]
        [--candidates darts|all|both] [--smoke] [--out results/FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from convnas.costs.measure import measure
from convnas.operators.darts_edge import DARTS_PRIMITIVES
from convnas.search_space import get_space

NEW_OPERATORS = ["c2sp", "do_conv_3x3", "osep_3x3", "csg_conv_3x3", "sw_sep"]
ROWS = {
    "plain": {"memory": "plain", "partial_channels": 1},
    "recompute": {"memory": "recompute", "partial_channels": 1},
    "partial K=4": {"memory": "plain", "partial_channels": 4},
    "recompute + partial K=4": {"memory": "recompute", "partial_channels": 4},
}
TARGETS = {"recompute": 0.35, "partial K=4": 0.35, "recompute + partial K=4": 0.15}


def _maxrss() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _space(candidates, setting, row, **kw):
    return get_space(
        "darts",
        candidates=list(candidates),
        channels=setting["channels"],
        layers=setting["layers"],
        num_classes=10,
        input_shape=[3, setting["hw"], setting["hw"]],
        **ROWS[row],
        **kw,
    )


def _step(supernet, a_opt, w_opt, x, y, xv, yv) -> None:
    """One first-order DARTS step: architecture step, then weight step."""
    a_opt.zero_grad(set_to_none=True)
    grads = torch.autograd.grad(F.cross_entropy(supernet(xv), yv), supernet.arch_parameters())
    for a, g in zip(supernet.arch_parameters(), grads, strict=True):
        a.grad = g
    a_opt.step()
    w_opt.zero_grad(set_to_none=True)
    F.cross_entropy(supernet(x), y).backward()
    torch.nn.utils.clip_grad_norm_(supernet.weight_parameters(), 5.0)
    w_opt.step()


def _training(supernet, batch, hw, device, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    w_opt = torch.optim.SGD(supernet.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(supernet.arch_parameters(), lr=3e-4, betas=(0.5, 0.999))
    data = [torch.randn(batch, 3, hw, hw, generator=gen, dtype=dtype) for _ in range(2)]
    labels = [torch.randint(0, 10, (batch,), generator=gen) for _ in range(2)]
    x, xv = (t.to(device) for t in data)
    y, yv = (t.to(device) for t in labels)
    return a_opt, w_opt, (x, y, xv, yv)


def run_row(spec: dict) -> dict:
    """One row, in this (fresh) process."""
    device = torch.device(spec["device"])
    setting, batch = spec["setting"], spec["batch"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    space = _space(spec["candidates"], setting, spec["row"])
    supernet = space.build_supernet("weighted").to(device)
    a_opt, w_opt, (x, y, xv, yv) = _training(supernet, batch, setting["hw"], device, None, 0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    base_rss = _maxrss()
    times = []
    for i in range(spec["warmup"] + spec["steps"]):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        _step(supernet, a_opt, w_opt, x, y, xv, yv)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= spec["warmup"]:
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = _maxrss() - base_rss
    costs = measure(
        supernet, (3, setting["hw"], setting["hw"]), batch_size=batch, optimizer="sgd_momentum"
    )
    return {
        "params": costs.params,
        "step_s": statistics.median(times),
        "peak_bytes": peak,
        "estimate_bytes": costs.peak_memory_bytes - costs.weight_bytes,
        "activation_bytes": costs.activation_bytes,
    }


def alphas_after_steps(spec: dict) -> dict:
    """Alphas (and betas) after ``steps`` float64 first-order steps, per row."""
    setting, out = spec["setting"], {}
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    for row in spec["rows"]:
        torch.manual_seed(0)
        supernet = _space(spec["candidates"], setting, row).build_supernet().double()
        a_opt, w_opt, batch = _training(
            supernet, spec["batch"], setting["hw"], "cpu", torch.float64, 1
        )
        for _ in range(spec["steps"]):
            _step(supernet, a_opt, w_opt, *batch)
        out[row] = torch.cat([p.detach().flatten() for p in supernet.arch_parameters()]).tolist()
    return out


def _child(kind: str, spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, f"--{kind}", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {spec.get('row')} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def _table(label, candidates, args, setting) -> list[str]:
    results = {}
    for row in ROWS:
        spec = {
            "row": row,
            "candidates": list(candidates),
            "setting": setting,
            "batch": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "device": args.device,
            "threads": args.threads,
        }
        results[row] = _child("row", spec)
        print(f"  done: {label} / {row}: {results[row]}", file=sys.stderr, flush=True)
    base = results["plain"]
    peak_label = "CUDA max_memory_allocated" if args.device == "cuda" else "peak RSS growth"
    lines = [
        f"### {label} ({len(candidates)} candidates, {base['params']:,} supernet params)",
        "",
        f"| row | {peak_label} (MiB) | x plain | estimate (MiB) | measured / estimate | "
        "step (s) | x plain | target (memory) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, r in results.items():
        ratio = r["peak_bytes"] / base["peak_bytes"]
        target = TARGETS.get(row)
        verdict = (
            "" if target is None else f"<= {target}x: {'met' if ratio <= target else 'MISSED'}"
        )
        lines.append(
            f"| {row} | {_mib(r['peak_bytes'])} | {ratio:.3f} | {_mib(r['estimate_bytes'])} | "
            f"{r['peak_bytes'] / r['estimate_bytes']:.2f} | {r['step_s']:.2f} | "
            f"{r['step_s'] / base['step_s']:.2f} | {verdict} |"
        )
    lines.append("")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--candidates", choices=("darts", "all", "both"), default="both")
    parser.add_argument("--smoke", action="store_true", help="tiny setting, a few minutes")
    parser.add_argument(
        "--threads", type=int, help="torch threads per row (default: torch's; 1 on a shared CPU)"
    )
    parser.add_argument("--out", help="also write the report to this markdown file")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--alphas", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:
        print(json.dumps(run_row(json.loads(args.row))))
        return 0
    if args.alphas:
        print(json.dumps(alphas_after_steps(json.loads(args.alphas))))
        return 0
    if args.smoke:
        args.batch_size, args.steps, args.warmup = min(args.batch_size, 4), 1, 1
    setting = (
        {"layers": 3, "channels": 8, "hw": 16}
        if args.smoke
        else {"layers": 8, "channels": 16, "hw": 32}
    )
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, "
        f"{args.threads or torch.get_num_threads()} threads, {os.cpu_count()} cores)"
    )
    sets = {
        "darts": [("DARTS primitives", DARTS_PRIMITIVES)],
        "all": [
            ("DARTS primitives + " + ", ".join(NEW_OPERATORS), [*DARTS_PRIMITIVES, *NEW_OPERATORS])
        ],
    }
    chosen = sets["darts"] + sets["all"] if args.candidates == "both" else sets[args.candidates]
    lines = [
        f"# DARTS supernet memory modes on {name}",
        "",
        f"{setting['layers']} cells, {setting['channels']} channels, batch {args.batch_size}, "
        f"{setting['hw']}x{setting['hw']}, first-order DARTS step (arch step + SGD-momentum "
        f"weight step), median of {args.steps} steps after {args.warmup} warm-up, one fresh "
        f"process per row; torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.platform()}.",
        "",
        "Estimate: `measure(supernet, batch_size, optimizer='sgd_momentum').peak_memory_bytes` "
        "minus the weights (resident before the baseline).",
        "",
    ]
    for label, candidates in chosen:
        lines += _table(label, candidates, args, setting)
    check = {
        "candidates": list(DARTS_PRIMITIVES),
        "setting": {"layers": setting["layers"], "channels": setting["channels"], "hw": 16},
        "batch": 4,
        "steps": 5,
        "rows": list(ROWS),
        "threads": args.threads,
    }
    alphas = {k: torch.tensor(v) for k, v in _child("alphas", check).items()}
    lines.append(
        f"Alphas after 5 float64 first-order steps (DARTS primitives, {check['setting']['layers']} "
        f"cells, {check['setting']['channels']} channels, batch 4, 16x16):"
    )
    for a, b in (("plain", "recompute"), ("partial K=4", "recompute + partial K=4")):
        diff = float((alphas[a] - alphas[b]).abs().max())
        moved = float((alphas[a] - alphas[a].new_zeros(())).abs().max())
        lines.append(
            f"- {b} vs {a}: max |difference| {diff:.3g} (max |alpha| {moved:.3g}); "
            f"{'identical' if diff == 0 else 'equal to 1e-12' if diff <= 1e-12 else 'DIFFER'}"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
