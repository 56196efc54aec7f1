"""Associative convolution (OPERATORS.md section 5): parameter counts, block tiling, sharing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import convnas
from convnas.errors import OperatorArgumentError
from convnas.models import cifar_resnet
from convnas.operators import BuildContext, create_operator, operator_info
from convnas.operators.csg import CSGConv2d, SliceGenerator


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("op_args", "expected"),
    [
        (None, 853_018),
        ({"slice_shape": (16, 16, 3, 3), "code_size": 128}, 347_162),
        ({"slice_shape": (12, 12, 3, 3), "code_size": 72}, 160_450),
        ({"slice_shape": (16, 16, 3, 3), "code_size": 128, "mode": "frozen"}, 52_250),
        ({"slice_shape": (16, 16, 3, 3), "code_size": 1024, "mode": "binary"}, 381_978),
    ],
)
def test_resnet56_parameter_counts_of_section_5_5(op_args, expected):
    net = cifar_resnet(56) if op_args is None else cifar_resnet(56, "csg_conv_3x3", op_args=op_args)
    assert _trainable(net) == expected


def _reference_kernel(codes, a, out_ch, in_ch, kernel, slice_shape):
    """Figure 1 tiling with loops: slice t = ((ob*n_ib + ib)*n_hb + hb)*n_wb + wb."""
    s0, s1, sh, sw = slice_shape
    v = codes @ a.T
    n_ib, n_hb, n_wb = math.ceil(in_ch / s1), math.ceil(kernel / sh), math.ceil(kernel / sw)
    k = torch.empty(out_ch, in_ch, kernel, kernel, dtype=v.dtype)
    for o in range(out_ch):
        for i in range(in_ch):
            for y in range(kernel):
                for x in range(kernel):
                    t = ((o // s0 * n_ib + i // s1) * n_hb + y // sh) * n_wb + x // sw
                    p = (((o % s0) * s1 + i % s1) * sh + y % sh) * sw + x % sw
                    k[o, i, y, x] = v[t, p]
    return k


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "slice_shape", "slices"),
    [(20, 28, 3, (12, 12, 3, 3), 6), (16, 16, 3, (16, 16, 3, 3), 1), (5, 7, 5, (4, 3, 3, 2), 24)],
)
def test_generated_kernel_is_the_block_tiling(cin, cout, kernel, slice_shape, slices):
    m = CSGConv2d(cin, cout, kernel, slice_shape=slice_shape, code_size=8, dtype=torch.float64)
    assert m.num_slices == slices
    want = _reference_kernel(
        m.codes.detach(), m.generator.weight.detach(), cout, cin, kernel, slice_shape
    )
    torch.testing.assert_close(m.generate_weight().detach(), want, rtol=1e-12, atol=1e-12)
    x = torch.randn(2, cin, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), F.conv2d(x, want, padding=kernel // 2))


def test_one_generator_per_network():
    net = cifar_resnet(20, "csg_conv_3x3", op_args={"slice_shape": [12, 12, 3, 3], "code_size": 72})
    layers = [m for m in net.modules() if isinstance(m, CSGConv2d)]
    assert len(layers) == 18 and len(net.shared) == 1
    (gen,) = net.shared.values()
    assert all(layer.generator is gen for layer in layers)
    names = [n for n, p in net.named_parameters(remove_duplicate=False) if p is gen.weight]
    assert len(names) == 1 and names[0].startswith("shared.")
    assert sum(k.endswith("codes") for k in net.state_dict()) == 18


def test_context_keys_by_shape_and_mode():
    ctx = BuildContext()
    a = create_operator("csg_conv_3x3", 8, 8, context=ctx, slice_shape=[12, 12, 3, 3], code_size=72)
    b = create_operator(
        "csg_conv_3x3", 8, 16, context=ctx, slice_shape=(12, 12, 3, 3), code_size=72
    )
    c = create_operator(
        "csg_conv_3x3", 8, 8, context=ctx, slice_shape=(12, 12, 3, 3), mode="frozen"
    )
    assert a.generator is b.generator and a.generator is not c.generator and len(ctx) == 2
    assert "generator.weight" not in a.state_dict()  # the network, not the layer, owns it
    alone = create_operator("csg_conv_3x3", 8, 8, slice_shape=[12, 12, 3, 3], code_size=72)
    assert "generator.weight" in alone.state_dict()


def test_initial_kernel_has_he_variance():
    for mode in ("trainable", "binary"):
        m = CSGConv2d(128, 128, 3, slice_shape=(16, 16, 3, 3), code_size=128, mode=mode)
        w = m.generate_weight().detach()
        assert abs(w.mean().item()) < 0.005
        assert w.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.05)


def test_frozen_modes():
    binary = SliceGenerator((4, 4, 3, 3), 16, "binary")
    frozen = SliceGenerator((4, 4, 3, 3), 16, "frozen")
    trainable = SliceGenerator((4, 4, 3, 3), 16, "trainable")
    torch.testing.assert_close(binary.weight.abs(), torch.full((144, 16), 0.25))  # 1/sqrt(16)
    assert list(binary.parameters()) == [] and list(frozen.parameters()) == []
    assert [n for n, _ in trainable.named_parameters()] == ["weight"]
    assert set(binary.state_dict()) == set(frozen.state_dict()) == {"weight"}
    frozen.load_state_dict(trainable.state_dict())  # a pre-trained A loads into a frozen one
    assert torch.equal(frozen.weight, trainable.weight.detach())


def test_fold_whole_network():
    net = cifar_resnet(56, "csg_conv_3x3", op_args={"slice_shape": (12, 12, 3, 3), "code_size": 72})
    x = torch.randn(2, 3, 16, 16)
    net.train()(x)  # non-trivial BN running statistics
    net.eval()
    folded = convnas.fold(net)
    assert not any(isinstance(m, CSGConv2d) for m in folded.modules())
    assert len(folded.shared) == 0
    assert _trainable(folded) == 853_018
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-5)
    layer = net.blocks[0].conv1
    torch.testing.assert_close(
        folded.blocks[0].conv1.weight, layer.generate_weight().detach(), rtol=0, atol=0
    )


def test_gradcheck_float64():
    m = CSGConv2d(5, 6, 3, stride=2, slice_shape=(4, 4, 3, 3), code_size=4, dtype=torch.float64)
    x = torch.randn(1, 5, 5, 5, dtype=torch.float64, requires_grad=True)
    codes = m.codes.detach().clone().requires_grad_(True)
    a = m.generator.weight.detach().clone().requires_grad_(True)

    def f(inp, c, gen_weight):
        return torch.func.functional_call(m, {"codes": c, "generator.weight": gen_weight}, (inp,))

    assert torch.autograd.gradcheck(f, (x, codes, a))


def test_argument_validation_and_metadata():
    with pytest.raises(OperatorArgumentError, match="mode must be one of"):
        CSGConv2d(8, 8, mode="sparse")
    with pytest.raises(OperatorArgumentError, match="slice_shape must be 4 positive ints"):
        CSGConv2d(8, 8, slice_shape=(16, 16, 3))
    with pytest.raises(OperatorArgumentError, match="code_size"):
        CSGConv2d(8, 8, code_size=0)
    with pytest.raises(OperatorArgumentError, match="the given generator"):
        CSGConv2d(8, 8, generator=SliceGenerator((12, 12, 3, 3), 72))
    info = operator_info("csg_conv_3x3")
    assert (info.family, info.kind, info.foldable) == ("csg", "conv", True)
    assert dict(info.search_space) == {
        "slice_shape": ((12, 12, 3, 3), (16, 16, 3, 3)),
        "code_size": (72, 128),
        "mode": ("trainable", "binary", "frozen"),
    }
