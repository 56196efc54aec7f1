"""Run every Triton kernel on CPU tensors under ``TRITON_INTERPRET=1``; print JSON results.

Run as a script (the test module starts it in a subprocess so the interpreter flag never leaks
into GPU runs): ``python tests/kernels/interpret_checks.py``. Each case compares the Triton path
with the float64 reference and reports ``err`` = max |triton - ref| / max(1, max |ref|).
"""

from __future__ import annotations

import json
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from convnas.kernels import even_conv as ev  # noqa: E402
from convnas.kernels import osep_conv as oc  # noqa: E402
from convnas.kernels import sw_shift_add as sw  # noqa: E402

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
CL = torch.channels_last
ALL_COMBOS = [(name, cl) for name in DTYPES for cl in (False, True)]
# --quick: one (dtype, layout) per shape case, rotating, so every kernel still runs each of them.
QUICK = [("float64", False), ("float32", True), ("bfloat16", False), ("float64", True)]


def combos(quick: bool, case: int) -> list[tuple[str, bool]]:
    return [QUICK[case % len(QUICK)]] if quick else ALL_COMBOS


def _err(got, ref) -> float:
    scale = max(1.0, float(ref.abs().max()))
    return float((got.double() - ref.double()).abs().max()) / scale


def _fmt(t, channels_last):
    return t.contiguous(memory_format=CL) if channels_last else t.contiguous()


def _layout_ok(t, channels_last) -> bool:
    return t.is_contiguous(memory_format=CL if channels_last else torch.contiguous_format)


def sw_cases(gen, quick):
    shapes = ((13, 3, 2, True), (7, 3, 1, True), (11, 5, 2, False))
    for case, (big, small, edges, perm) in enumerate(shapes):
        nk, rep = -(-big // small), 3
        e = (small - 1) - small // 2
        if perm:
            sh = torch.rand(edges, rep, nk, generator=gen).argsort(-1)
            sv = torch.rand(edges, rep, nk, generator=gen).argsort(-1)
        else:  # any table in [0, nk) is exact through the CSR adjoint
            sh = torch.randint(0, nk, (edges, rep, nk), generator=gen)
            sv = torch.randint(0, nk, (edges, rep, nk), generator=gen)
        rho = torch.randint(0, nk, (edges, rep), generator=gen)
        z64 = torch.randn(2, rep * nk, 5 + 2 * e, 6 + 2 * e, generator=gen, dtype=torch.float64)
        g64 = [torch.randn(2, rep, 5, 6, generator=gen, dtype=torch.float64) for _ in range(3)]
        ref = sw.shift_add_reference(z64, sh, sv, rho, big, small)
        gref = sw._backward_reference(*g64, sh, sv, rho, big, small)
        for name, cl in combos(quick, case):
            dt = DTYPES[name]
            tag = f"sw K={big} k={small} E={edges} perm={perm} {name} cl={cl}"
            z = _fmt(z64.to(dt), cl)
            out = sw._triton_forward(z, sh, sv, rho, big, small)
            err = max(_err(a, b) for a, b in zip(out, ref, strict=True))
            yield tag + " fwd", name, err, all(_layout_ok(o, cl) for o in out)
            gs = [_fmt(g.to(dt), cl) for g in g64]
            gz = sw._triton_backward(*gs, sh, sv, rho, big, small)
            yield tag + " bwd", name, _err(gz, gref), _layout_ok(gz, cl)


def _conv_triple(tag, fns, x64, w64, args, gen, todo):
    fwd_ref, gi_ref, gw_ref, fwd_tri, gi_tri, gw_tri, tail_gi, tail_gw = fns
    y64 = fwd_ref(x64, w64, *args)
    g64 = torch.randn(y64.shape, generator=gen, dtype=torch.float64)
    refs = (y64, gi_ref(g64, w64, *args, *tail_gi), gw_ref(g64, x64, *args, *tail_gw))
    for name, cl in todo:
        dt = DTYPES[name]
        x, w, g = _fmt(x64.to(dt), cl), w64.to(dt), _fmt(g64.to(dt), cl)
        y = fwd_tri(x, w, *args)
        yield f"{tag} {name} cl={cl} fwd", name, _err(y, refs[0]), _layout_ok(y, cl)
        gx = gi_tri(g, w, *args, *tail_gi)
        yield f"{tag} {name} cl={cl} grad_input", name, _err(gx, refs[1]), _layout_ok(gx, cl)
        gw = gw_tri(g, x, *args, *tail_gw)
        yield f"{tag} {name} cl={cl} grad_weight", name, _err(gw, refs[2]), True


def even_cases(gen, quick):
    shapes = ((6, 2, 1), (6, 2, 2), (9, 4, 1), (5, 4, 2))
    for case, (channels, k, stride) in enumerate(shapes):
        pads = [p for grp in ev.quarter_group_pads(channels, k) for p in grp[2]]
        sizes = [b - a for a, b, _ in ev.quarter_group_pads(channels, k)]
        x64 = torch.randn(2, channels, 7, 6, generator=gen, dtype=torch.float64)
        w64 = torch.randn(5, channels, k, k, generator=gen, dtype=torch.float64)
        fns = (
            ev.even_conv2d_reference,
            ev._grad_input_reference,
            ev._grad_weight_reference,
            ev._triton_forward,
            ev._triton_grad_input,
            ev._triton_grad_weight,
            ([7, 6],),
            ([k, k],),
        )
        tag = f"even C={channels} k={k} s={stride}"
        args = (sizes, pads, [stride, stride])
        yield from _conv_triple(tag, fns, x64, w64, args, gen, combos(quick, case))


def osep_cases(gen, quick):
    shapes = ((10, 10, 3, (3, 3), 1), (10, 7, 4, (3, 1), 2))
    for case, (cin, cout, groups, kern, stride) in enumerate(shapes):
        n, m = -(-cin // groups), -(-cout // groups)
        in_index = torch.tensor(list(range(cin)) + [-1] * (groups * n - cin))
        order = [(t % groups) * m + t // groups for t in range(groups * m)][:cout]
        out_index = torch.tensor(order)
        pad = [kern[0] // 2, kern[1] // 2]
        x64 = torch.randn(2, cin, 6, 5, generator=gen, dtype=torch.float64)
        w64 = torch.randn(groups * m, n, *kern, generator=gen, dtype=torch.float64)
        fns = (
            oc.osep_group_conv_reference,
            oc._grad_input_reference,
            oc._grad_weight_reference,
            oc._triton_forward,
            oc._triton_grad_input,
            oc._triton_grad_weight,
            ([2, cin, 6, 5],),
            (list(w64.shape),),
        )
        args = (in_index, out_index, groups, [stride, stride], pad)
        tag = f"osep {cin}->{cout} g={groups} k={kern} s={stride}"
        yield from _conv_triple(tag, fns, x64, w64, args, gen, combos(quick, case + 1))


def main() -> int:
    gen = torch.Generator().manual_seed(0)
    quick = "--quick" in sys.argv
    which = [a for a in sys.argv[1:] if a != "--quick"] or ["sw", "even", "osep"]
    cases = {"sw": sw_cases, "even": even_cases, "osep": osep_cases}
    results = []
    for key in which:
        for tag, dtype, err, layout in cases[key](gen, quick):
            results.append({"case": tag, "dtype": dtype, "err": err, "layout_ok": layout})
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
