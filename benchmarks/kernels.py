"""Benchmark the convnas Triton kernels against PyTorch, torch.compile and cuDNN.

Usage (needs a CUDA GPU and triton; exits cleanly with a message otherwise)::

    python benchmarks/kernels.py --out benchmarks/results/kernels_<device>.md [--quick]

For every case (CIFAR ResNet and ImageNet-stage shapes; fp32 and bf16; NCHW and channels_last)
it times the forward, the backward and forward+backward with ``triton.testing.do_bench``
(median of repeated runs) and prints, for each, the kernel time and the ratios
``other / kernel`` (> 1: the kernel is faster) against

  (a) the naive PyTorch composition (padded copies, shuffle copies, slice-and-add),
  (b) ``torch.compile`` of that composition,
  (c) cuDNN for the dense equivalent: a 3x3 conv for C2sp/C4sp; a depthwise-separable conv
      (3x3 depthwise + 1x1) at equal MACs for osep; the three depthwise strip convs for SW,

plus the achieved TFLOP/s (convs, 2 FLOPs per MAC) or TB/s (SW shift-add, minimum bytes) and
its share of the device's peak (a small table of datasheet peaks; "n/a" for unknown devices).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import torch
import torch.nn.functional as F

DEVICE = "cuda"

# (dense bf16 TFLOP/s, dense tf32 TFLOP/s, fp32 TFLOP/s non-tensor, TB/s) from datasheets.
PEAKS = {
    "H100 SXM": (989.0, 494.7, 66.9, 3.35),
    "H100 PCIe": (756.0, 378.0, 51.2, 2.0),
    "H100": (989.0, 494.7, 66.9, 3.35),
    "H200": (989.0, 494.7, 66.9, 4.8),
    "A100": (312.0, 156.0, 19.5, 2.0),
}


def _peak(name: str):
    for key, val in PEAKS.items():
        if key in name:
            return val
    return None


def _bench(fn) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def _passes(forward, inputs):
    """(fwd, bwd, fwd+bwd) callables for ``forward(*inputs) -> tensor or tuple of tensors``."""

    def outs():
        y = forward(*inputs)
        return y if isinstance(y, (tuple, list)) else (y,)

    ys = outs()
    grads = [torch.randn_like(y) for y in ys]
    need = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]

    def fwd():
        with torch.no_grad():
            forward(*inputs)

    def bwd():
        torch.autograd.grad(ys, need, grads, retain_graph=True, allow_unused=True)

    def both():
        torch.autograd.grad(outs(), need, grads, allow_unused=True)

    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": both}


def _time_all(variants, inputs):
    """Median ms of every (variant, pass); a variant that fails records None."""
    out = {}
    for name, fn in variants.items():
        if fn is None:
            out[name] = None
            continue
        try:
            out[name] = {k: _bench(f) for k, f in _passes(fn, inputs).items()}
        except Exception as exc:  # noqa: BLE001 - a failed baseline is reported, not fatal
            print(f"    {name}: failed ({type(exc).__name__}: {str(exc)[:120]})", file=sys.stderr)
            out[name] = None
    return out


def _fmt_input(t, cl, dtype):
    t = t.to(dtype)
    return t.contiguous(memory_format=torch.channels_last) if cl else t.contiguous()


def _compiled(fn):
    try:
        return torch.compile(fn, dynamic=False)
    except Exception:  # noqa: BLE001
        return None


def even_case(batch, c, hw, stride, dtype, cl):
    from convnas.kernels import even_conv2d, use_kernels
    from convnas.kernels.even_conv import even_conv2d_reference, quarter_group_pads

    groups = quarter_group_pads(c, 2)
    sizes, pads = [b - a for a, b, _ in groups], [p for g in groups for p in g[2]]
    x = _fmt_input(torch.randn(batch, c, hw, hw, device=DEVICE), cl, dtype).requires_grad_()
    w2 = torch.randn(c, c, 2, 2, device=DEVICE, dtype=dtype, requires_grad=True)
    w3 = torch.randn(c, c, 3, 3, device=DEVICE, dtype=dtype, requires_grad=True)

    def kernel(x, w2, w3):
        with use_kernels(True):
            return even_conv2d(x, w2, stride=stride)

    def naive(x, w2, w3):
        return even_conv2d_reference(x, w2, sizes, pads, [stride, stride])

    def dense(x, w2, w3):
        return F.conv2d(x, w3, None, stride, 1)

    ho = -(-hw // stride)
    work = 2 * batch * c * c * 4 * ho * ho
    variants = {"kernel": kernel, "naive": naive, "compiled": _compiled(naive), "dense": dense}
    return variants, (x, w2, w3), ("TFLOP/s", work)


def osep_case(batch, c, hw, stride, dtype, cl):
    from convnas.kernels import osep_group_conv, use_kernels
    from convnas.operators.osep_plan import osep_plan

    plan = osep_plan(c, c, 3, stride=stride)
    dev = DEVICE
    ws = [
        torch.randn(la.padded_out, la.in_per_group, *la.kernel_size, device=dev, dtype=dtype)
        for la in plan.layers
    ]
    for w in ws:
        w.requires_grad_()
    x = _fmt_input(torch.randn(batch, c, hw, hw, device=dev), cl, dtype).requires_grad_()
    ho = -(-hw // stride)
    macs = sum(w.numel() * ho * ho for w in ws)  # layer 1 carries the stride (N = 2)
    # depthwise-separable at equal MACs per pixel: c2 * 9 + c2 * c2 = macs / (ho*ho)
    c2 = max(1, round((-9 + math.sqrt(81 + 4 * macs / (ho * ho))) / 2))
    x2 = _fmt_input(torch.randn(batch, c2, hw, hw, device=dev), cl, dtype).requires_grad_()
    dw = torch.randn(c2, 1, 3, 3, device=dev, dtype=dtype, requires_grad=True)
    pw = torch.randn(c2, c2, 1, 1, device=dev, dtype=dtype, requires_grad=True)

    def kernel(x, x2, dw, pw, *ws):
        with use_kernels(True):
            for la, w in zip(plan.layers, ws, strict=True):
                x = osep_group_conv(x, w, la.groups, la.output_index, la.stride, la.padding)
        return x

    def naive(x, x2, dw, pw, *ws):
        for la, w in zip(plan.layers, ws, strict=True):
            x = F.pad(x, (0, 0, 0, 0, 0, la.in_pad))
            x = F.conv2d(x, w, None, la.stride, la.padding, 1, la.groups)
            if la.shuffle:
                b, cc, h, ww = x.shape
                x = x.view(b, la.groups, cc // la.groups, h, ww).transpose(1, 2)
                x = x.reshape(b, cc, h, ww)
            x = x[:, : la.out_channels]
        return x

    def dense(x, x2, dw, pw, *ws):
        return F.conv2d(F.conv2d(x2, dw, None, stride, 1, 1, c2), pw)

    variants = {"kernel": kernel, "naive": naive, "compiled": _compiled(naive), "dense": dense}
    return variants, (x, x2, dw, pw, *ws), ("TFLOP/s", 2 * batch * macs)


def sw_case(batch, c, hw, big, dtype, cl, edges=4, small=3):
    from convnas.kernels import shift_add, strip_conv, strip_weights, use_kernels
    from convnas.kernels.sw_shift_add import shift_add_cost, shift_add_reference

    nk = math.ceil(big / small)
    dev = DEVICE
    sh = torch.rand(edges, c, nk, device=dev).argsort(-1)
    sv = torch.rand(edges, c, nk, device=dev).argsort(-1)
    rho = torch.randint(0, nk, (edges, c), device=dev)
    x = _fmt_input(torch.randn(batch, c, hw, hw, device=dev), cl, dtype).requires_grad_()
    w = torch.randn(c * nk, 1, small, small, device=dev, dtype=dtype, requires_grad=True)

    def kernel(x, w):
        with use_kernels(True):
            z = F.conv2d(x, w, None, 1, small - 1, 1, c)
            return shift_add(z, sh, sv, rho, big, small)

    def naive(x, w):
        z = F.conv2d(x, w, None, 1, small - 1, 1, c)
        return shift_add_reference(z, sh, sv, rho, big, small)

    def dense(x, w):
        return strip_conv(x, *strip_weights(w, sh, sv, rho, small), big)

    cost = shift_add_cost(batch, c, hw, hw, edges, nk, small, x.element_size())
    variants = {"kernel": kernel, "naive": naive, "compiled": _compiled(naive), "dense": dense}
    return variants, (x, w), ("TB/s (shift-add bytes)", cost["bytes"])


CIFAR = [(16, 32, 1), (32, 16, 1), (64, 8, 1), (32, 32, 2)]  # (channels, size, stride)
IMAGENET = [(64, 56, 1), (128, 28, 1), (256, 14, 1), (512, 7, 1), (128, 56, 2)]
SW_K = {56: 51, 28: 49, 14: 47, 7: 13, 32: 13, 16: 13, 8: 7}


def cases(quick: bool):
    shapes = [("cifar", 128, c, s, st) for c, s, st in CIFAR]
    shapes += [("imagenet", 64, c, s, st) for c, s, st in IMAGENET]
    if quick:
        shapes = [shapes[0], shapes[5]]
    for family, batch, c, size, stride in shapes:
        yield "c2sp", f"{family} B{batch} C{c} {size}x{size} s{stride}", even_case, (
            batch, c, size, stride)  # fmt: skip
        yield "osep", f"{family} B{batch} C{c} {size}x{size} s{stride}", osep_case, (
            batch, c, size, stride)  # fmt: skip
        if stride == 1:
            k = SW_K[size]
            yield "sw", f"{family} B{batch} C{c} {size}x{size} K{k}", sw_case, (batch, c, size, k)


def _ratio(other, kernel):
    return "n/a" if other is None or not kernel else f"{other / kernel:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=None, help="markdown results file")
    parser.add_argument("--quick", action="store_true", help="two shapes only")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/kernels.py: no CUDA device (torch.cuda.is_available() is False); "
              "nothing was measured. Run it on a GPU machine.")  # fmt: skip
        return 0
    try:
        import triton  # noqa: F401
    except ImportError:
        print('benchmarks/kernels.py: triton is not installed (pip install "convnas[gpu]").')
        return 0
    name = torch.cuda.get_device_name()
    peak = _peak(name)
    head = (
        f"# convnas kernels on {name} (torch {torch.__version__})\n\n"
        "Times: median ms (triton.testing.do_bench). Ratios: other / kernel (> 1 = kernel "
        "faster). dense = cuDNN dense equivalent (3x3 conv | dsep at equal MACs | SW strip "
        "convs). FLOPs = 2 x MACs.\n\n"
        "| op | shape | dtype | layout | pass | kernel ms | naive x | compiled x | dense x "
        "| achieved | % peak |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for op, label, build, shape in cases(args.quick):
        for dtype in (torch.float32, torch.bfloat16):
            for cl in (False, True):
                variants, inputs, (unit, work) = build(*shape, dtype=dtype, cl=cl)
                times = _time_all(variants, inputs)
                kt = times["kernel"] or {}
                for pas in ("fwd", "bwd", "fwd+bwd"):
                    k = kt.get(pas)
                    achieved, share = "n/a", "n/a"
                    if k and pas == "fwd":
                        rate = work / (k * 1e-3) / 1e12
                        achieved = f"{rate:.2f} {unit}"
                        if peak:
                            ref = (
                                peak[3]
                                if "TB/s" in unit
                                else peak[0 if dtype != torch.float32 else 1]
                            )
                            share = f"{100 * rate / ref:.1f}"
                    kms = "n/a" if k is None else f"{k:.3f}"
                    layout = "CL" if cl else "NCHW"
                    row = f"| {op} | {label} | {str(dtype)[6:]} | {layout} | {pas} | {kms} | "
                    row += " | ".join(
                        _ratio((times[v] or {}).get(pas), k) for v in ("naive", "compiled", "dense")
                    )
                    rows.append(row + f" | {achieved} | {share} |")
                    print(rows[-1], flush=True)
    text = head + "\n".join(rows) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
