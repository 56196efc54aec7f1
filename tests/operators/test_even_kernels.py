"""C2sp / C4sp and the asymmetric C2 / C4 baselines (OPERATORS.md section 1).

References are written here from the spec tables, not from the padding helpers under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from convnas.errors import OperatorArgumentError
from convnas.operators import create_operator, operator_info
from convnas.operators.even_kernels import EvenConv2d, PooledEvenConv2d, even_conv2d

# F.pad order (left, right, top, bottom) of G0..G3, copied from the OPERATORS.md 1.1 table.
SPEC_PADS = {
    2: [(0, 1, 0, 1), (1, 0, 1, 0), (1, 0, 0, 1), (0, 1, 1, 0)],
    4: [(1, 2, 1, 2), (2, 1, 2, 1), (2, 1, 1, 2), (1, 2, 2, 1)],
}
# Where each group's k x k kernel sits inside the dense (k+1) x (k+1) kernel: (row0, col0).
# G0 pads bottom/right, so its taps are at offsets {0, +1}: rows/cols 1:3 of the 3x3 kernel.
EMBED_CORNER = {
    2: [(1, 1), (0, 0), (1, 0), (0, 1)],
    4: [(1, 1), (0, 0), (1, 0), (0, 1)],
}


def _quarters(c):
    q, r = divmod(c, 4)
    sizes = [q + 1 if i < r else q for i in range(4)]
    starts = [sum(sizes[:i]) for i in range(4)]
    return [(a, a + n) for a, n in zip(starts, sizes, strict=True)]


def _reference(x, w, bias=None, stride=1):
    """Per-group padding from the spec table, then one VALID conv."""
    k = w.shape[-1]
    groups = zip(_quarters(x.shape[1]), SPEC_PADS[k], strict=True)
    parts = [F.pad(x[:, a:b], pad) for (a, b), pad in groups]
    return F.conv2d(torch.cat(parts, 1), w, bias, stride)


def _dense_embedding(w):
    """The (k+1) x (k+1) kernel whose channel group g holds w in its corner slot."""
    c_out, c_in, k, _ = w.shape
    dense = w.new_zeros(c_out, c_in, k + 1, k + 1)
    for (a, b), (r0, c0) in zip(_quarters(c_in), EMBED_CORNER[k], strict=True):
        dense[:, a:b, r0 : r0 + k, c0 : c0 + k] = w[:, a:b]
    return dense


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("stride", [1, 2])
def test_equals_per_group_padding_then_valid_conv(k, stride):
    m = EvenConv2d(8, 6, k, stride, bias=True)
    x = torch.randn(2, 8, 7, 6)
    y = m(x)
    assert y.shape == (2, 6, math.ceil(7 / stride), math.ceil(6 / stride))
    torch.testing.assert_close(y, _reference(x, m.weight, m.bias, stride))


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels", [4, 7, 10])
def test_equals_odd_dense_kernel_with_corner_embedding(k, stride, channels):
    w = torch.randn(5, channels, k, k, dtype=torch.float64)
    x = torch.randn(2, channels, 9, 8, dtype=torch.float64)
    dense = _dense_embedding(w)
    assert dense.shape[-1] == k + 1  # C2sp -> 3x3, C4sp -> 5x5 receptive field
    expected = F.conv2d(x, dense, stride=stride, padding=k // 2)
    torch.testing.assert_close(even_conv2d(x, w, stride=stride), expected)


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("size", [5, 6])
def test_all_ones_flip_invariance_c2sp_and_not_c2(m, size):
    c = 4 * m
    x = torch.ones(1, c, size, size)
    w = torch.ones(3, c, 2, 2)
    y = even_conv2d(x, w)[0, 0]
    torch.testing.assert_close(y, y.flip(0), rtol=0, atol=0)
    torch.testing.assert_close(y, y.flip(1), rtol=0, atol=0)
    for corner in (y[0, 0], y[0, -1], y[-1, 0], y[-1, -1]):
        assert corner.item() == 9 * m
    assert (y[1:-1, 1:-1] == 16 * m).all()
    assert (y[0, 1:-1] == 12 * m).all() and (y[1:-1, 0] == 12 * m).all()

    plain = even_conv2d(x, w, symmetric=False)[0, 0]
    assert not torch.equal(plain, plain.flip(0)) and not torch.equal(plain, plain.flip(1))
    assert plain[0, 0].item() == 16 * m and plain[-1, -1].item() == 4 * m


@pytest.mark.parametrize("k", [2, 4])
def test_asymmetric_baseline_is_tf_same(k):
    w = torch.randn(3, 5, k, k)
    x = torch.randn(2, 5, 8, 8)
    before, after = (k - 1) // 2, k - 1 - (k - 1) // 2
    expected = F.conv2d(F.pad(x, (before, after, before, after)), w)
    torch.testing.assert_close(even_conv2d(x, w, symmetric=False), expected)
    # stride 2 on an even size: TF SAME pads (k-2) in total, the surplus after
    pad2 = ((k - 2) // 2, k - 2 - (k - 2) // 2)
    expected2 = F.conv2d(F.pad(x, (*pad2, *pad2)), w, stride=2)
    torch.testing.assert_close(even_conv2d(x, w, stride=2, symmetric=False), expected2)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize(("k", "stride"), [(2, 1), (2, 2), (4, 1), (4, 2)])
def test_gradcheck_float64(symmetric, k, stride):
    x = torch.randn(1, 5, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 5, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: even_conv2d(x, w, b, stride, symmetric), (x, w, b)
    )


@pytest.mark.parametrize("k", [2, 4])
def test_channel_counts_1_to_9_and_odd_sizes(k):
    for channels in range(1, 10):
        for size in (1, 2, 5, 7):
            for stride in (1, 2):
                m = EvenConv2d(channels, 3, k, stride, dtype=torch.float64)
                x = torch.randn(1, channels, size, size + 2, dtype=torch.float64)
                y = m(x)
                assert y.shape == (1, 3, (size - 1) // stride + 1, (size + 1) // stride + 1)
                torch.testing.assert_close(y, _reference(x, m.weight, stride=stride))


def test_group_pads_are_exposed_as_data():
    assert EvenConv2d(6, 4, 2).group_pads() == (
        (0, 2, (0, 1, 0, 1)),
        (2, 4, (1, 0, 1, 0)),
        (4, 5, (1, 0, 0, 1)),
        (5, 6, (0, 1, 1, 0)),
    )
    pads = EvenConv2d(3, 4, 4).group_pads()
    assert [(a, b) for a, b, _ in pads] == [(0, 1), (1, 2), (2, 3), (3, 3)]
    assert [p for _, _, p in pads] == SPEC_PADS[4]
    c2 = EvenConv2d(5, 4, 2, stride=2, symmetric=False)
    assert c2.group_pads((9, 8)) == ((0, 5, (0, 0, 0, 1)),)
    with pytest.raises(OperatorArgumentError, match="input_size"):
        c2.group_pads()


@pytest.mark.parametrize("size", [8, 9])
def test_downsample_pool_is_avg_pool_then_stride_one(size):
    op = create_operator("c2sp", 6, 10, 2, downsample="pool")
    assert isinstance(op, PooledEvenConv2d) and op[1].stride == (1, 1)
    x = torch.randn(2, 6, size, size)
    # 2x2 average over the pixels each window holds (ceil: the last window may be cut)
    even = 2 * math.ceil(size / 2) - size
    padded = F.pad(x, (0, even, 0, even))
    counts = F.pad(torch.ones(1, 1, size, size), (0, even, 0, even))
    h = padded.shape[-1] // 2
    sums = padded.reshape(2, 6, h, 2, h, 2).sum((3, 5))
    pooled = sums / counts.reshape(1, 1, h, 2, h, 2).sum((3, 5))
    y = op(x)
    assert y.shape == (2, 10, math.ceil(size / 2), math.ceil(size / 2))
    torch.testing.assert_close(y, _reference(pooled, op[1].weight))
    # at stride 1 "pool" changes nothing: the same plain C2sp
    assert isinstance(create_operator("c2sp", 6, 10, 1, downsample="pool"), EvenConv2d)


def test_registry_metadata_and_init():
    for name, k in (("c2sp", 2), ("c4sp", 4), ("c2", 2), ("c4", 4)):
        info = operator_info(name)
        assert (info.family, info.kind, info.strides) == ("even", "conv", (1, 2))
        op = create_operator(name, 4, 4, 1)
        assert op.kernel_size == (k, k) and op.symmetric == name.endswith("sp")
    assert dict(operator_info("c2sp").search_space) == {"downsample": ("stride", "pool")}
    assert operator_info("c2").hparam_names() == ()
    w = EvenConv2d(64, 64, 2).weight  # He-normal, fan_in: std sqrt(2 / (64 * 4))
    assert abs(w.std().item() / math.sqrt(2 / 256) - 1) < 0.05
    assert EvenConv2d(4, 4).bias is None and EvenConv2d(4, 4, bias=True).bias.shape == (4,)


def test_clear_errors():
    for bad in (3, 1, 0, (2, 4)):
        with pytest.raises(OperatorArgumentError, match="kernel_size"):
            EvenConv2d(4, 4, bad)
    with pytest.raises(OperatorArgumentError, match="downsample.*'max'"):
        create_operator("c2sp", 4, 4, 2, downsample="max")
    with pytest.raises(OperatorArgumentError, match="kernel_size=3"):
        even_conv2d(torch.randn(1, 4, 5, 5), torch.randn(2, 4, 3, 3))
    with pytest.raises(OperatorArgumentError, match="in_channels"):
        EvenConv2d(0, 4)
    with pytest.raises(OperatorArgumentError, match="stride"):
        EvenConv2d(4, 4, stride=0)
