"""OSepConv2d: dense equivalence, gradients, registration and the o-ResNet tables."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.models import cifar_resnet
from convnas.operators import create_operator, operator_info
from convnas.operators.osep import OSepConv2d
from convnas.operators.osep_plan import osep_plan


def _dense_layer(weight, cin, cout, groups, shuffle):
    """One grouped conv as a dense (cout, cin, kh, kw) kernel, built from OPERATORS.md 3.2.

    Zero-pad the inputs to groups * ceil(cin / groups), run the grouped conv to
    groups * ceil(cout / groups) outputs, shuffle them (reshape (groups, -1), transpose,
    flatten) unless this is the last layer, keep the first cout.
    """
    in_pg, out_pg = math.ceil(cin / groups), math.ceil(cout / groups)
    full = torch.zeros(groups * out_pg, groups * in_pg, *weight.shape[2:], dtype=weight.dtype)
    for o in range(groups * out_pg):
        g = o // out_pg
        full[o, g * in_pg : (g + 1) * in_pg] = weight[o]
    full = full[:, :cin]
    if shuffle:
        full = full[torch.arange(groups * out_pg).view(groups, out_pg).t().reshape(-1)]
    return full[:cout]


def _dense_kernel(module):
    """Compose the layers of a chain whose spatial layers are one KxK or a Kx1, 1xK pair."""
    n = len(module.convs)
    total = None
    for i, conv in enumerate(module.convs):
        ci, co = module.plan.channels[i], module.plan.channels[i + 1]
        w = _dense_layer(conv.weight.detach(), ci, co, module.plan.groups[i], shuffle=i < n - 1)
        if total is None:
            total = w
        elif w.shape[2:] == (1, 1):
            total = torch.einsum("om,mihw->oihw", w[:, :, 0, 0], total)
        elif total.shape[2:] == (1, 1):
            total = torch.einsum("omhw,mi->oihw", w, total[:, :, 0, 0])
        else:  # K^H x 1, then 1 x K^W: an outer product
            total = torch.einsum("omw,mih->oihw", w[:, :, 0, :], total[:, :, :, 0])
    return total


@pytest.mark.parametrize(
    ("cin", "cout", "kwargs"),
    [
        (11, 11, {}),  # g = (6, 2): padded inputs and dropped outputs in both layers
        (15, 13, {}),  # g = (8, 2): 3 outputs of layer 1 dropped after the shuffle
        (7, 12, {}),
        (12, 7, {"policy": "linear"}),
        (8, 8, {"spatial": True}),
        (9, 6, {"kernel_size": (3, 5), "spatial": True}),
        (16, 16, {"n_sep": 3}),
        (16, 12, {"n_sep": 4, "kernel_size": 5}),  # 1x1 before the 5x5 layer
        (6, 6, {"n_sep": 5, "spatial": True, "gamma": 0.5}),
    ],
)
@pytest.mark.parametrize("stride", [1, 2])
def test_equals_the_composed_dense_conv(cin, cout, kwargs, stride):
    kwargs = dict(kwargs)
    kernel = kwargs.pop("kernel_size", 3)
    m = OSepConv2d(cin, cout, kernel, stride, dtype=torch.float64, **kwargs)
    dense = _dense_kernel(m)
    kh, kw = dense.shape[2:]
    assert (kh, kw) == m.plan.kernel_size
    x = torch.randn(2, cin, 11, 10, dtype=torch.float64)
    expected = F.conv2d(x, dense, stride=stride, padding=(kh // 2, kw // 2))
    torch.testing.assert_close(m(x), expected)
    assert sum(p.numel() for p in m.parameters()) == m.plan.params


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_channels": 7, "out_channels": 13},  # g = (4, 2), padding and drops in both
        {"in_channels": 5, "out_channels": 7, "spatial": True, "stride": 2},
        {"in_channels": 5, "out_channels": 7, "n_sep": 3},  # g = (5, 2, 3)
    ],
)
def test_gradcheck_float64(kwargs):
    m = OSepConv2d(kernel_size=3, dtype=torch.float64, **kwargs)
    x = torch.randn(1, kwargs["in_channels"], 4, 4, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in m.named_parameters()]

    def fn(inp, *weights):
        return torch.func.functional_call(m, dict(zip(names, weights, strict=True)), (inp,))

    weights = tuple(p.detach().clone().requires_grad_() for p in m.parameters())
    assert torch.autograd.gradcheck(fn, (x, *weights), eps=1e-6, atol=1e-6, fast_mode=True)


@settings(max_examples=40, deadline=None)
@given(
    cin=st.integers(1, 96),
    cout=st.integers(1, 96),
    kernel=st.sampled_from([3, 5, 7, (3, 5), (1, 3)]),
    n_sep=st.integers(1, 5),
    spatial=st.booleans(),
    gamma=st.sampled_from([0.5, 1.0, 2.0]),
    policy=st.sampled_from(["min", "linear", "bottleneck", "inverted"]),
)
def test_property_module_params_equal_the_plan(cin, cout, kernel, n_sep, spatial, gamma, policy):
    spatial = spatial and n_sep > 1
    kw = dict(n_sep=n_sep, spatial=spatial, gamma=gamma, policy=policy)
    m = OSepConv2d(cin, cout, kernel, device="meta", **kw)
    plan = osep_plan(cin, cout, kernel, **kw)
    assert sum(p.numel() for p in m.parameters()) == plan.params == m.plan.params
    assert [c.groups for c in m.convs] == list(plan.groups)
    assert m(torch.empty(1, cin, 7, 7, device="meta")).shape == (1, cout, 7, 7)


def test_registration_and_search_space():
    for name in ("osep_3x3", "osep_5x5", "osep"):
        info = operator_info(name)
        assert info.family == "osep" and info.kind == "conv" and info.channel_change
        assert {"n_sep", "gamma", "policy", "spatial"} <= set(info.search_space)
    assert create_operator("osep_5x5", 8, 8).plan.kernel_size == (5, 5)
    assert create_operator("osep", 8, 8, kernel_size=7).plan.kernel_size == (7, 7)
    m = create_operator("osep", 16, 16, kernels=(3, 3), groups=(4, None), kernel_size=5)
    assert m.plan.groups[0] == 4 and [c.kernel_size for c in m.convs] == [(3, 3), (3, 3)]


@pytest.mark.parametrize("name", ["osep_3x3", "osep"])
def test_every_search_space_choice_builds_and_runs(name):
    space = operator_info(name).search_space
    keys = list(space)
    for values in itertools.product(*(space[k] for k in keys)):
        hp = dict(zip(keys, values, strict=True))
        for cout, stride in ((8, 1), (12, 2)):
            m = create_operator(name, 8, cout, stride, device="meta", **hp)
            y = m(torch.empty(2, 8, 9, 9, device="meta"))
            assert y.shape == (2, cout, 5 if stride == 2 else 9, 5 if stride == 2 else 9)
            assert sum(p.numel() for p in m.parameters()) == m.plan.params


def test_from_plan_repr_and_errors():
    plan = osep_plan(64, 64, 3, stride=2)
    m = OSepConv2d.from_plan(plan)
    assert m.plan is plan and m.stride == (2, 2)
    assert "groups=(22, 3)" in repr(m) and "params=3234" in repr(m)
    assert m(torch.randn(1, 64, 8, 8)).shape == (1, 64, 4, 4)
    with pytest.raises(OperatorArgumentError, match="odd layer kernels"):
        OSepConv2d(8, 8, 4)
    with pytest.raises(OperatorArgumentError, match="gamma"):
        create_operator("osep_3x3", 8, 8, gamma=0.0)
    m.reset_parameters()
    assert all(torch.isfinite(c.weight).all() for c in m.convs)


# --- o-ResNet, Tables 6 and 7 (OPERATORS.md section 3.6) ------------------------------------


def _count_macs(model, shape):
    """Multiply-accumulates per image of every conv and linear layer (BN not counted)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        per_image = output.numel() // output.shape[0]
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += per_image * module.in_channels // module.groups * kh * kw
        else:
            total += per_image * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model(torch.empty(shape, device="meta"))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize(
    ("depth", "multiplier", "params", "macs"),
    [
        (20, 3.625, 221_710, 40_704_400),
        (32, 3.75, 367_990, 67_263_840),
        (56, 3.875, 682_412, 125_740_464),
        (110, 3.875, 1_337_468, 247_631_280),
    ],
)
def test_o_resnet_cifar(depth, multiplier, params, macs):
    with torch.device("meta"):
        net = cifar_resnet(depth, "osep_3x3", shortcut="B", width_multiplier=multiplier)
    assert sum(p.numel() for p in net.parameters()) == params
    assert _count_macs(net, (1, 3, 32, 32)) == macs


def test_o_resnet110_without_multiplier():
    with torch.device("meta"):
        net = cifar_resnet(110, "osep_3x3", shortcut="B")
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 3) == 0.180


@pytest.mark.parametrize(
    ("depth", "multiplier", "params", "gmacs"),
    [
        (20, 5.375, 5_133_705, 0.1604),
        (32, 5.75, 7_784_059, 0.2782),
        (56, 6.0, 12_553_172, 0.4971),
        (110, 6.25, 23_791_578, 1.0275),
    ],
)
def test_o_resnet_imagenet40(depth, multiplier, params, gmacs):
    with torch.device("meta"):
        net = cifar_resnet(
            depth,
            "osep_3x3",
            widths=(64, 128, 256),
            width_multiplier=multiplier,
            shortcut="B",
            num_classes=1000,
            stem_stride=2,
        )
    assert sum(p.numel() for p in net.parameters()) == params
    assert round(_count_macs(net, (1, 3, 32, 32)) / 1e9, 4) == gmacs
