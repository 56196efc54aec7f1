"""Cost-model memory estimate vs ``torch.cuda.max_memory_allocated`` over one training step.

For each network (one per operator family) it measures the estimate on the meta device, then on
CUDA runs two warm-up steps (so optimizer state and library workspaces exist), resets the peak
counter and runs one more step: ``zero_grad(set_to_none=True)``, forward, cross-entropy, backward,
``optimizer.step()``. The estimate models tensors only, so the script also reports the measured
peak less the allocations it cannot see (``memory_allocated()`` before the step minus the
parameters, buffers, optimizer state and batch it knows: the cuBLAS workspace, mostly). Target:
the estimated peak within 10% of that figure for every network.

Usage:
    python benchmarks/costs_vs_cuda.py                 # on a CUDA machine
    python benchmarks/costs_vs_cuda.py --cpu           # estimates table only, no GPU needed
    python benchmarks/costs_vs_cuda.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from convnas import list_operators, measure
from convnas.models import cifar_resnet
from convnas.models.imagenet_resnet import resnet50

# name, builder, input shape, batch size
NETWORKS = [
    ("resnet20/conv_3x3", lambda: cifar_resnet(20), (3, 32, 32), 128),
    ("resnet20/c2sp", lambda: cifar_resnet(20, "c2sp"), (3, 32, 32), 128),
    ("resnet20/do_conv_3x3", lambda: cifar_resnet(20, "do_conv_3x3"), (3, 32, 32), 128),
    ("resnet20/csg_conv_3x3", lambda: cifar_resnet(20, "csg_conv_3x3"), (3, 32, 32), 128),
    ("resnet20/osep", lambda: cifar_resnet(20, "osep"), (3, 32, 32), 128),
    ("resnet20/sw_sep", lambda: cifar_resnet(20, "sw_sep"), (3, 32, 32), 128),
    ("resnet56/conv_3x3", lambda: cifar_resnet(56), (3, 32, 32), 128),
    ("resnet50-imagenet", lambda: resnet50(), (3, 224, 224), 32),
]


def _available(name: str) -> bool:
    op = name.split("/", 1)[1] if "/" in name else "conv_3x3"
    return op in list_operators()


def _optimizer(name: str, params) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01)
    if name == "sgd_momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    return torch.optim.AdamW(params, lr=1e-3)


def cuda_step_peak(builder, shape, batch: int, optimizer: str) -> tuple[int, int]:
    """(max_memory_allocated over one step, allocations the cost model cannot see)."""
    device = torch.device("cuda")
    model = builder().to(device).train()
    opt = _optimizer(optimizer, model.parameters())
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    known = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    known += sum(
        v.numel() * v.element_size()
        for s in opt.state.values()
        for v in s.values()
        if torch.is_tensor(v) and v.is_cuda
    )
    known += x.numel() * x.element_size() + y.numel() * y.element_size()
    torch.cuda.reset_peak_memory_stats()
    unseen = max(0, torch.cuda.memory_allocated() - known)
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(), unseen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="print the estimates only (no GPU)")
    parser.add_argument("--optimizer", default="sgd", help="sgd, sgd_momentum, adam, adamw")
    parser.add_argument("--batch", type=int, help="override every network's batch size")
    parser.add_argument("--only", help="substring filter on network names")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    on_cuda = torch.cuda.is_available() and not args.cpu
    if not on_cuda and not args.cpu:
        print(
            "costs_vs_cuda: no CUDA device; nothing to compare against. "
            "Run with --cpu to print the estimates table.",
            file=sys.stderr,
        )
        return 0
    rows = []
    header = f"{'network':24} {'batch':>5} {'MACs/img':>12} {'params':>10} {'train MiB':>10} "
    header += f"{'peak MiB':>9} {'t_meas s':>8}"
    if on_cuda:
        header += f" {'cuda MiB':>9} {'unseen':>7} {'ratio':>6}"
    print(f"optimizer={args.optimizer}; MACs are multiply-accumulates (not 2xMACs)")
    print(header)
    worst = 0.0
    for name, builder, shape, batch in NETWORKS:
        if args.only and args.only not in name:
            continue
        if not _available(name):
            print(f"{name:24} skipped: operator not registered")
            continue
        batch = args.batch or batch
        start = time.perf_counter()
        costs = measure(builder(), shape, batch_size=batch, optimizer=args.optimizer)
        elapsed = time.perf_counter() - start
        row = {"network": name, "batch": batch, "measure_s": elapsed, **costs.to_dict()}
        line = (
            f"{name:24} {batch:5d} {costs.macs:12,d} {costs.params:10,d} "
            f"{costs.train_memory_bytes / 2**20:10.1f} {costs.peak_memory_bytes / 2**20:9.1f} "
            f"{elapsed:8.2f}"
        )
        if on_cuda:
            peak, unseen = cuda_step_peak(builder, shape, batch, args.optimizer)
            torch.cuda.empty_cache()
            ratio = costs.peak_memory_bytes / max(1, peak - unseen)
            worst = max(worst, abs(ratio - 1))
            row.update(cuda_peak_bytes=peak, unseen_bytes=unseen, ratio=ratio)
            line += f" {peak / 2**20:9.1f} {unseen / 2**20:7.1f} {ratio:6.3f}"
        rows.append(row)
        print(line)
    if on_cuda:
        verdict = "PASS" if worst <= 0.10 else "FAIL"
        print(f"worst |estimate / (cuda - unseen) - 1| = {worst:.3f} (target <= 0.10): {verdict}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
