"""The operators route to the custom kernels on CUDA with the right arguments.

On CPU the kernel dispatchers run their reference composition, so forcing the CUDA route there
checks the plumbing (tables, group layout, output index) against each operator's own path.
"""

from __future__ import annotations

import pytest
import torch

import convnas.kernels
from convnas.operators import create_operator

CASES = [
    ("c2sp", 6, 10, 2, {}),
    ("c4sp", 7, 7, 1, {}),
    ("osep_3x3", 10, 10, 1, {}),
    ("osep_3x3", 16, 32, 2, {}),
    ("osep_5x5", 12, 12, 1, {"n_sep": 3}),
    ("sw", 12, 12, 1, {"big_kernel": 13, "edges": 2, "paths": 2}),
    ("sw_sep", 8, 12, 2, {"big_kernel": 7}),
]


def _route_to_kernels(monkeypatch, on: bool) -> None:
    import convnas.operators.even_kernels as even
    import convnas.operators.osep as osep
    import convnas.operators.shiftwise as shiftwise

    def route(tensor):
        return convnas.kernels if on else None

    for module in (even, osep, shiftwise):
        monkeypatch.setattr(module, "gpu_kernels_for", route)


@pytest.mark.parametrize(("name", "cin", "cout", "stride", "hparams"), CASES)
def test_kernel_route_matches_the_operator(monkeypatch, name, cin, cout, stride, hparams):
    op = create_operator(name, cin, cout, stride, dtype=torch.float64, **hparams).eval()
    x = torch.randn(2, cin, 9, 9, dtype=torch.float64, requires_grad=True)
    expected = op(x)
    (gx_expected,) = torch.autograd.grad(expected.square().sum(), x)
    _route_to_kernels(monkeypatch, True)
    got = op(x)
    (gx,) = torch.autograd.grad(got.square().sum(), x)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(gx, gx_expected)


def test_cpu_tensors_never_load_the_kernels():
    from convnas.operators.kernel_dispatch import gpu_kernels_for

    assert gpu_kernels_for(torch.zeros(1)) is None


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "cin", "cout", "stride", "hparams"), CASES)
def test_operator_on_cuda_matches_cpu(name, cin, cout, stride, hparams):
    op = create_operator(name, cin, cout, stride, **hparams).eval()
    x = torch.randn(4, cin, 16, 16)
    expected = op.double()(x.double())
    got = op.float().cuda()(x.cuda())
    torch.testing.assert_close(got.double().cpu(), expected, rtol=1e-4, atol=1e-4)
