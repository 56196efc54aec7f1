"""ShiftwiseConv (OPERATORS.md section 4): dense-strip equivalence, tables, shapes, folding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convnas
from convnas.errors import OperatorArgumentError
from convnas.operators import create_operator, operator_info
from convnas.operators.shiftwise import ShiftwiseConv2d, ShiftwiseSeparable
from convnas.operators.shiftwise_tables import rep_channel_count, slot_offsets, strip_span


def _reference_kernels(m: ShiftwiseConv2d):
    """W_H, W_V, W_I assembled from the tables by the formulas of section 4.4, with loops."""
    k, nk, rep, edges = m.small_kernel, m.num_filters, m.rep_channels, m.edges
    length = nk * k
    # Output channel q = c*nk + j of the small conv is filter j of rep channel c.
    w = m.weight.detach().sum(0).reshape(rep, nk, k, k)
    w_h = torch.zeros(rep, 1, k, length, dtype=w.dtype)
    w_v = torch.zeros(rep, 1, length, k, dtype=w.dtype)
    w_i = torch.zeros(rep, 1, k, k, dtype=w.dtype)
    for c in range(rep):
        for g in range(edges):
            for i in range(nk):
                w_h[c, 0, :, i * k : (i + 1) * k] += w[c, int(m.perm_h_index[g, c, i])]
                w_v[c, 0, i * k : (i + 1) * k, :] += w[c, int(m.perm_v_index[g, c, i])]
            w_i[c, 0] += w[c, int(m.ident_index[g, c])]
    return w_h, w_v, w_i


def _dense_branches(m: ShiftwiseConv2d, x_rep: torch.Tensor):
    """Zero-padded depthwise convs; strips span offsets [-mid, L-1-mid] (section 4.4)."""
    w_h, w_v, w_i = _reference_kernels(m)
    k, length, mid = m.small_kernel, m.num_filters * m.small_kernel, m.big_kernel // 2
    half, rep = k // 2, m.rep_channels
    y_h = F.conv2d(F.pad(x_rep, (mid, length - 1 - mid, half, half)), w_h, groups=rep)
    y_v = F.conv2d(F.pad(x_rep, (half, half, mid, length - 1 - mid)), w_v, groups=rep)
    y_i = F.conv2d(F.pad(x_rep, (half,) * 4), w_i, groups=rep)
    return y_h, y_v, y_i


@pytest.mark.parametrize(("big", "small"), [(13, 3), (11, 3), (9, 3), (7, 3), (15, 5)])
@pytest.mark.parametrize(("channels", "ghost_ratio"), [(4, 0.0), (7, 0.23), (10, 0.5)])
def test_branches_equal_dense_strip_convs(big, small, channels, ghost_ratio):
    m = ShiftwiseConv2d(
        channels,
        big_kernel=big,
        small_kernel=small,
        edges=2,
        ghost_ratio=ghost_ratio,
        paths=2,
        seed=channels,
        dtype=torch.float64,
    )
    x = torch.randn(2, channels, 6, 7, dtype=torch.float64)
    x_rep = x[:, m.rep_index]
    got = m.branches(x_rep)
    want = _dense_branches(m, x_rep)
    for a, b in zip(m.branches_gather(x_rep), want, strict=True):  # the definition
        torch.testing.assert_close(a, b)
    for g, r in zip(got, want, strict=True):
        assert g.shape == (2, m.rep_channels, 6, 7)
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    for g, r in zip(m.dense_kernels(), _reference_kernels(m), strict=True):
        torch.testing.assert_close(g.detach(), r, rtol=0, atol=1e-15)


def test_forward_composes_branches_and_keeps_channel_order():
    m = ShiftwiseConv2d(9, big_kernel=7, edges=2, ghost_ratio=0.3, dtype=torch.float64)
    for bn in (m.bn_h, m.bn_v, m.bn_i):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    m.eval()
    x = torch.randn(2, 9, 8, 8, dtype=torch.float64)
    rep, ghost = m.rep_index, m.ghost_index
    assert sorted(rep.tolist() + ghost.tolist()) == list(range(9)) and len(ghost) == 9 - 6
    y_h, y_v, y_i = _dense_branches(m, x[:, rep])
    want = x.clone()
    want[:, rep] = m.bn_h(y_h) + m.bn_v(y_v) + m.bn_i(y_i) + x[:, rep]
    torch.testing.assert_close(m(x), want, rtol=1e-12, atol=1e-12)


def test_tilings_are_permutations_so_p_h_rows_and_columns_sum_to_edges():
    m = ShiftwiseConv2d(12, big_kernel=25, small_kernel=3, edges=4, ghost_ratio=0.0)
    nk = m.num_filters
    assert nk == 9
    for table in (m.perm_h_index, m.perm_v_index):
        counts = F.one_hot(table, nk).sum(0)  # (R, slot i, filter j) = sum of E permutations
        assert (counts.sum(-1) == 4).all() and (counts.sum(-2) == 4).all()
    assert m.ident_index.shape == (4, 12)
    assert int(m.ident_index.min()) >= 0 and int(m.ident_index.max()) < nk


def test_shape_example_of_section_4_10():
    m = ShiftwiseConv2d(80, big_kernel=51, small_kernel=3, ghost_ratio=0.23)
    assert m.rep_channels == 60 and m.num_filters == 17
    assert m.weight.shape == (1, 1020, 1, 3, 3)  # 9,180 weights per path
    x = torch.randn(2, 80, 56, 56)
    with torch.no_grad():
        assert m.small_conv(x[:, m.rep_index]).shape == (2, 1020, 58, 58)
        assert m(x).shape == (2, 80, 56, 56)


def test_rep_channel_rule():
    assert rep_channel_count(80, 0.23) == 60
    assert rep_channel_count(8, 0.23) == 6
    assert rep_channel_count(12, 0.23) == 8
    assert rep_channel_count(7, 0.0) == 6  # rounded down to even
    assert rep_channel_count(1, 0.0) == 1  # tiny C: raised to one rep channel
    assert rep_channel_count(3, 0.5) == 1
    m = ShiftwiseConv2d(1, big_kernel=7)
    assert m(torch.randn(1, 1, 5, 5)).shape == (1, 1, 5, 5)


def test_spans_and_offsets_of_section_4_4():
    assert strip_span(51, 3) == (25, 25)
    assert strip_span(49, 3) == (24, 26)
    assert strip_span(47, 3) == (23, 24)
    assert strip_span(13, 3) == (6, 8)
    # c_i = -real_pad[i] - e with real_pad = 4, 1, -2, -5, -8 for K=13, k=3 (e = 1).
    assert slot_offsets(13, 3) == [-5, -2, 1, 4, 7]


def test_ghost_channels_pass_through_unchanged():
    m = ShiftwiseConv2d(10, big_kernel=7, ghost_ratio=0.5)
    x = torch.randn(2, 10, 6, 6)
    y = m(x)
    assert len(m.ghost_index) == 6
    torch.testing.assert_close(y[:, m.ghost_index], x[:, m.ghost_index], rtol=0, atol=0)
    assert not torch.allclose(y[:, m.rep_index], x[:, m.rep_index])


def _tables(m):
    return [m.rep_index, m.ghost_index, m.perm_h_index, m.perm_v_index, m.ident_index]


def test_tables_survive_state_dict_round_trip():
    a = ShiftwiseConv2d(8, seed=0)
    b = ShiftwiseConv2d(8, seed=1)
    assert any(not torch.equal(s, t) for s, t in zip(_tables(a), _tables(b), strict=True))
    assert {"perm_h_index", "perm_v_index", "ident_index", "rep_index"} <= set(a.state_dict())
    a.train()(torch.randn(4, 8, 9, 9))  # non-trivial BN running statistics
    b.load_state_dict(a.state_dict())
    for s, t in zip(_tables(a), _tables(b), strict=True):
        assert torch.equal(s, t)
    a.eval(), b.eval()
    x = torch.randn(2, 8, 9, 9)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_seeds_and_global_rng():
    a, b = ShiftwiseConv2d(16, seed=3), ShiftwiseConv2d(16, seed=4)
    assert not torch.equal(a.perm_h_index, b.perm_h_index)
    assert not torch.equal(a.ghost_index, b.ghost_index)
    torch.manual_seed(123)
    c = ShiftwiseConv2d(16, seed=3)
    for s, t in zip(_tables(a), _tables(c), strict=True):
        assert torch.equal(s, t)  # tables do not depend on the global RNG
    # Constructing draws from the global RNG only what the weight init draws, nothing else.
    torch.manual_seed(7)
    ShiftwiseConv2d(16, seed=5)
    after_layer = torch.get_rng_state()
    torch.manual_seed(7)
    torch.nn.init.trunc_normal_(torch.empty(c.weight.shape), std=0.02)
    assert torch.equal(after_layer, torch.get_rng_state())


def test_fold_merges_paths():
    m = ShiftwiseConv2d(8, paths=2)
    with torch.no_grad():
        m.weight[1].normal_(0, 0.3)  # make the paths differ
    x = torch.randn(2, 8, 9, 9)
    folded = m.fold()
    assert folded.paths == 1 and folded.weight.shape[0] == 1
    torch.testing.assert_close(folded(x), m(x), rtol=1e-5, atol=1e-5)
    m(x), folded(x)  # update both BNs identically in train mode
    m.eval(), folded.eval()
    torch.testing.assert_close(folded(x), m(x), rtol=1e-5, atol=1e-5)
    sep = create_operator("sw_sep", 8, 12, 2, paths=2).eval()
    folded_sep = convnas.fold(sep)
    assert folded_sep.shiftwise.paths == 1
    torch.testing.assert_close(folded_sep(x), sep(x), rtol=1e-5, atol=1e-5)


def test_gradcheck_float64():
    m = ShiftwiseConv2d(3, big_kernel=7, edges=2, ghost_ratio=0.34, paths=2, dtype=torch.float64)
    assert m.rep_channels == 1 and len(m.ghost_index) == 2
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = m.weight.detach().clone().requires_grad_(True)

    def f(inp, weight):
        return torch.func.functional_call(m, {"weight": weight}, (inp,))

    assert torch.autograd.gradcheck(f, (x, w))  # train mode: BN on batch statistics
    m.eval()
    assert torch.autograd.gradcheck(f, (x, w), fast_mode=True)
    wide = ShiftwiseConv2d(4, big_kernel=9, edges=2, ghost_ratio=0.0, dtype=torch.float64)
    x4 = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: wide.branches(inp)[0], (x4,), fast_mode=True)


def test_stride_two():
    with pytest.raises(OperatorArgumentError, match="stride"):
        create_operator("sw", 8, 8, 2)
    with pytest.raises(OperatorArgumentError, match="stride 1 only"):
        ShiftwiseConv2d(8, stride=2)
    s2 = create_operator("sw_sep", 8, 12, 2)
    assert isinstance(s2, ShiftwiseSeparable)
    s1 = create_operator("sw_sep", 8, 12, 1)
    s1.load_state_dict(s2.state_dict())
    s1.eval(), s2.eval()
    x = torch.randn(2, 8, 8, 8)
    pooled = x.reshape(2, 8, 4, 2, 4, 2).mean(dim=(3, 5))
    torch.testing.assert_close(s2(x), s1(pooled), rtol=1e-6, atol=1e-6)
    assert s2(torch.randn(2, 8, 9, 9)).shape == (2, 12, 5, 5)


def test_argument_validation():
    with pytest.raises(OperatorArgumentError, match="out_channels == in_channels"):
        ShiftwiseConv2d(8, 12)
    with pytest.raises(OperatorArgumentError, match="small_kernel must be odd"):
        ShiftwiseConv2d(8, small_kernel=4)
    with pytest.raises(OperatorArgumentError, match="ghost_ratio"):
        ShiftwiseConv2d(8, ghost_ratio=1.0)
    with pytest.raises(OperatorArgumentError, match="big_kernel >= small_kernel"):
        ShiftwiseConv2d(8, big_kernel=3, small_kernel=5)


def test_registry_metadata():
    info = operator_info("sw")
    assert (info.family, info.kind, info.strides) == ("shiftwise", "conv", (1,))
    assert info.foldable and not info.channel_change
    assert dict(info.search_space) == {
        "big_kernel": (7, 13, 25, 31),
        "small_kernel": (3, 5),
        "edges": (1, 2, 4),
        "ghost_ratio": (0, 0.23, 0.5),
        "paths": (1, 2),
    }
    sep = operator_info("sw_sep")
    assert sep.strides == (1, 2) and sep.channel_change and sep.foldable
    assert dict(sep.search_space) == dict(info.search_space)
