"""Step time and training memory of the DARTS search supernet, side by side.

The DARTS CIFAR-10 search setting: 8 cells, 16 initial channels, batch 64, 32x32 inputs. The
first row uses the 8 DARTS primitives; the second adds convnas's operators as candidates. Each
row times full first-order DARTS steps (architecture step on a validation batch, then weight
step) and reports:

- step time: median over the timed steps, after warm-up;
- estimated training memory: convnas's cost model on the meta device (weights, gradients, SGD
  momentum, activations saved for backward) at the batch size;
- measured peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the growth of the
  process's peak resident set size (coarse: it includes allocator caching).

Usage:
    python benchmarks/supernet.py [--device cpu|cuda] [--steps 5] [--out results/FILE.md]
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from convnas.costs.measure import measure
from convnas.operators.darts_edge import DARTS_PRIMITIVES
from convnas.search_space import get_space

NEW_OPERATORS = ["c2sp", "do_conv_3x3", "osep_3x3", "csg_conv_3x3", "sw_sep"]


def _rss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def run_case(candidates, device, steps, warmup, batch):
    torch.manual_seed(0)
    space = get_space(
        "darts",
        candidates=list(candidates),
        channels=16,
        layers=8,
        num_classes=10,
        input_shape=[3, 32, 32],
    )
    supernet = space.build_supernet("weighted")
    estimate = measure(supernet, (3, 32, 32), batch_size=batch, optimizer="sgd_momentum")
    supernet.to(device)
    w_opt = torch.optim.SGD(supernet.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(supernet.arch_parameters(), lr=3e-4, betas=(0.5, 0.999))
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    xv, yv = torch.randn_like(x), torch.randint(0, 10, (batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    rss_before = _rss_bytes()
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a_opt.zero_grad(set_to_none=True)
        grads = torch.autograd.grad(F.cross_entropy(supernet(xv), yv), supernet.arch_parameters())
        for a, g in zip(supernet.arch_parameters(), grads, strict=True):
            a.grad = g
        a_opt.step()
        w_opt.zero_grad(set_to_none=True)
        F.cross_entropy(supernet(x), y).backward()
        torch.nn.utils.clip_grad_norm_(supernet.weight_parameters(), 5.0)
        w_opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
        peak_label = "cuda max_memory_allocated"
    else:
        peak = _rss_bytes() - rss_before
        peak_label = "peak RSS growth"
    return {
        "candidates": len(candidates),
        "params": estimate.params,
        "step_s": statistics.median(times),
        "estimate_bytes": estimate.train_memory_bytes,
        "peak_bytes": peak,
        "peak_label": peak_label,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)"
    )
    rows = [
        (
            "DARTS primitives",
            run_case(DARTS_PRIMITIVES, device, args.steps, args.warmup, args.batch),
        )
    ]
    rows.append(
        (
            "DARTS primitives + " + ", ".join(NEW_OPERATORS),
            run_case(
                [*DARTS_PRIMITIVES, *NEW_OPERATORS], device, args.steps, args.warmup, args.batch
            ),
        )
    )
    base = rows[0][1]
    lines = [
        f"# DARTS supernet benchmark on {name}",
        "",
        f"8 cells, 16 channels, batch {args.batch}, 32x32, first-order DARTS step "
        f"(arch step + weight step), median of {args.steps} steps after {args.warmup} warm-up; "
        f"torch {torch.__version__}.",
        "",
        "| candidates | ops | supernet params | step time (s) | x base | est. train memory "
        f"(MiB) | {base['peak_label']} (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['candidates']} | {r['params']:,} | {r['step_s']:.3f} | "
            f"{r['step_s'] / base['step_s']:.2f} | {r['estimate_bytes'] / 2**20:.1f} | "
            f"{r['peak_bytes'] / 2**20:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
