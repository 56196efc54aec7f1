"""DO-Conv, DO-DConv, DO-GConv and the DO separable block (OPERATORS.md section 2).

The reference kernel is built here from the paper formula with an explicit index table
``iota(o, j) = floor(o / (C_out/G)) * (C_in/G) + j``, not with the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convnas
from convnas.errors import OperatorArgumentError
from convnas.operators import create_operator, operator_info
from convnas.operators.do_conv import DOConv2d, DOSepConv2d

F64 = torch.float64
# (C_in, C_out, groups): DO-Conv, DO-DConv, DO-DConv with channel multiplier 2, DO-GConv
CONFIGS = [(4, 6, 1), (6, 6, 6), (6, 12, 6), (8, 12, 4)]


def _identity(c_in, mn, d_mul):
    eye = torch.zeros(c_in, mn, d_mul, dtype=F64)
    for s in range(mn * (d_mul // mn)):
        eye[:, s % mn, s] = 1.0
    return eye


def _iota(c_out, cin_g, groups, official=False):
    o = torch.arange(c_out)[:, None]
    j = torch.arange(cin_g)[None, :]
    if official:  # the yangyanli/DO-Conv reshape pairing, for contrast only
        return (o * cin_g + j) % (cin_g * groups)
    return (o // (c_out // groups)) * cin_g + j


def _reference_kernel(w, d_total, groups, official=False):
    c_out, cin_g, _ = w.shape
    d_sel = d_total[_iota(c_out, cin_g, groups, official)]  # (C_out, C_in/G, MN, D_mul)
    k = torch.einsum("ojms,ojs->ojm", d_sel, w)
    side = math.isqrt(k.shape[-1])
    return k.reshape(c_out, cin_g, side, side)


def _randomise(m):
    with torch.no_grad():
        m.d_prime.normal_()
    return m


@pytest.mark.parametrize(("cin", "cout", "groups"), CONFIGS)
@pytest.mark.parametrize("stride", [1, 2])
def test_at_init_equals_plain_conv_with_reshaped_w(cin, cout, groups, stride):
    m = DOConv2d(cin, cout, 3, stride, groups=groups, bias=True, dtype=F64)
    assert m.d_mul == 9 and torch.count_nonzero(m.d_prime) == 0
    x = torch.randn(2, cin, 7, 7, dtype=F64)
    expected = F.conv2d(
        x, m.weight.reshape(cout, cin // groups, 3, 3), m.bias, stride, 1, 1, groups
    )
    torch.testing.assert_close(m(x), expected)


@pytest.mark.parametrize(("cin", "cout", "groups"), CONFIGS)
@pytest.mark.parametrize("d_mul", [9, 13, 25])
def test_fold_equals_unfolded_and_paper_formula(cin, cout, groups, d_mul):
    m = _randomise(DOConv2d(cin, cout, 3, 2, groups=groups, bias=True, d_mul=d_mul, dtype=F64))
    m.eval()
    x = torch.randn(2, cin, 7, 6, dtype=F64)
    ref_k = _reference_kernel(m.weight, m.d_prime + _identity(cin, 9, d_mul), groups)
    expected = F.conv2d(x, ref_k, m.bias, 2, 1, 1, groups)
    torch.testing.assert_close(m(x), expected)
    folded = m.fold()
    assert type(folded) is nn.Conv2d
    assert (folded.stride, folded.padding, folded.dilation, folded.groups) == (
        (2, 2),
        (1, 1),
        (1, 1),
        groups,
    )
    assert folded.weight.dtype == F64 and folded.weight.device == m.weight.device
    torch.testing.assert_close(folded.weight, ref_k)
    torch.testing.assert_close(folded(x), m(x))
    torch.testing.assert_close(folded.bias, m.bias)


@pytest.mark.parametrize(("cin", "cout", "groups"), [(6, 12, 6), (8, 12, 4)])
def test_paper_pairing_differs_from_official_pairing_when_grouped(cin, cout, groups):
    m = _randomise(DOConv2d(cin, cout, 3, groups=groups, dtype=F64))
    d_total = m.d_prime + _identity(cin, 9, 9)
    official = _reference_kernel(m.weight, d_total, groups, official=True)
    assert not torch.allclose(m.kernel(), official)
    torch.testing.assert_close(m.kernel(), _reference_kernel(m.weight, d_total, groups))


def test_identity_is_a_buffer_and_param_counts():
    m = DOConv2d(8, 12, 3, groups=4, d_mul=20)
    names = {n for n, _ in m.named_parameters()}
    assert names == {"weight", "d_prime"}
    assert "d_identity" in dict(m.named_buffers()) and "d_identity" in m.state_dict()
    assert not m.d_identity.requires_grad
    torch.testing.assert_close(m.d_identity.double(), _identity(8, 9, 20), rtol=0, atol=0)
    assert m.d_identity[:, :, 18:].abs().sum() == 0  # D_mul mod MN zero columns
    for cin, cout, groups, d_mul in [(8, 12, 4, 20), (4, 6, 1, 9), (6, 12, 6, 25), (16, 16, 1, 36)]:
        m = DOConv2d(cin, cout, 3, groups=groups, d_mul=d_mul)
        trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
        assert trainable == cout * (cin // groups) * d_mul + cin * 9 * d_mul
    # 8*12/4*20 + 8*9*20 = 480 + 1440
    assert sum(p.numel() for p in DOConv2d(8, 12, 3, groups=4, d_mul=20).parameters()) == 1920


def test_init_bounds():
    m = DOConv2d(16, 32, 3, bias=True)
    bound = 1 / math.sqrt(16 * 9)  # kaiming_uniform(a=sqrt(5)) on (C_out, C_in/G, D_mul)
    assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.95 * bound
    assert m.bias.abs().max() <= bound
    assert DOConv2d(16, 32, 3, d_mul=36).weight.abs().max() <= 1 / math.sqrt(16 * 36)


def test_d_mul_below_mn_rejected():
    with pytest.raises(OperatorArgumentError, match="d_mul=8"):
        DOConv2d(4, 4, 3, d_mul=8)
    with pytest.raises(OperatorArgumentError, match="d_mul"):
        create_operator("do_conv_3x3", 8, 8, 1, d_mul=4)


def test_groups_validation_names_the_values():
    with pytest.raises(OperatorArgumentError, match="in_channels=6, out_channels=8, groups=4"):
        DOConv2d(6, 8, groups=4)
    with pytest.raises(OperatorArgumentError, match="out_channels=6"):
        DOConv2d(8, 6, groups=4)
    with pytest.raises(OperatorArgumentError, match="groups=0"):
        DOConv2d(8, 8, groups=0)


def test_one_by_one_is_a_plain_conv():
    m = DOConv2d(4, 6, 1, d_mul=9)
    assert m.d_mul == 1 and m.d_prime is None and m.d_identity is None
    assert m.weight.shape == (6, 4, 1)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight.reshape(6, 4, 1, 1)))
    assert list(m.buffers()) == []


def test_gradcheck_float64():
    m = _randomise(DOConv2d(2, 4, 3, 2, groups=2, bias=True, d_mul=10, dtype=F64))
    x = torch.randn(1, 2, 4, 5, dtype=F64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in (m.weight, m.d_prime, m.bias)]

    def fn(x, w, d, b):
        return torch.func.functional_call(m, {"weight": w, "d_prime": d, "bias": b}, (x,))

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_sep_block_folds_and_matches_reference():
    m = DOSepConv2d(6, 10, 3, 2, d_mul=12, dtype=F64)
    _randomise(m.depthwise).eval()
    assert m.depthwise.groups == 6 and m.depthwise.stride == (2, 2)
    x = torch.randn(2, 6, 7, 7, dtype=F64)
    dw = m.depthwise
    ref_k = _reference_kernel(dw.weight, dw.d_prime + _identity(6, 9, 12), 6)
    expected = F.conv2d(F.conv2d(x, ref_k, None, 2, 1, 1, 6), m.pointwise.weight)
    torch.testing.assert_close(m(x), expected)
    folded = m.fold()
    assert [type(c) for c in folded] == [nn.Conv2d, nn.Conv2d]
    torch.testing.assert_close(folded(x), expected)


def test_registry_and_network_fold():
    info = operator_info("do_conv_3x3")
    assert (info.family, info.kind, info.foldable) == ("do_conv", "conv", True)
    assert dict(info.search_space) == {"d_mul": (9, 25, 36)}
    assert info.hparam_defaults() == {"d_mul": None, "groups": 1}
    sep = operator_info("do_sep_conv_3x3")
    assert (sep.family, sep.kind, sep.foldable) == ("do_conv", "conv", True)
    op = create_operator("do_conv_3x3", 8, 12, 2, groups=4, d_mul=25)
    assert (op.groups, op.d_mul) == (4, 25)
    net = nn.Sequential(_randomise(create_operator("do_conv_3x3", 4, 8, 1)), nn.ReLU())
    net.append(create_operator("do_sep_conv_3x3", 8, 8, 2)).eval()
    _randomise(net[2].depthwise)
    x = torch.randn(2, 4, 9, 9)
    folded = convnas.fold(net)
    assert not any(isinstance(mod, (DOConv2d, DOSepConv2d)) for mod in folded.modules())
    torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)
