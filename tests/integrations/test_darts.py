"""The DARTS ``OPS``/``PRIMITIVES`` adapter, driven by a DARTS-style search network written here.

The network below follows DARTS's ``model_search.py`` (cells of mixed edges, softmax-weighted
candidates, reduction cells with stride 2 on the edges leaving the cell inputs) and uses nothing
of convnas but ``ops()`` and ``primitives()``, as a DARTS code base would.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convnas
from convnas.errors import OperatorArgumentError, UnknownOperatorError
from convnas.integrations import darts
from convnas.integrations.darts import ops, primitives

DARTS_8 = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]


class MixedOp(nn.Module):
    def __init__(self, table, names, c, stride):
        super().__init__()
        self.ops = nn.ModuleList()
        for name in names:
            op = table[name](c, stride, False)
            if "pool" in name:  # as DARTS's MixedOp
                op = nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
            self.ops.append(op)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))


class Preprocess(nn.Module):
    """ReLU, 1x1 conv (stride 2 when the previous cell kept the resolution of a reduction), BN."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, 1, stride, bias=False),
            nn.BatchNorm2d(c_out, affine=False),
        )

    def forward(self, x):
        return self.body(x)


class Cell(nn.Module):
    def __init__(self, table, names, steps, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.steps, self.reduction = steps, reduction
        self.pre0 = Preprocess(c_pp, c, 2 if reduction_prev else 1)
        self.pre1 = Preprocess(c_p, c, 1)
        self.edges = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(table, names, c, stride))

    def forward(self, s0, s1, weights):
        states = [self.pre0(s0), self.pre1(s1)]
        offset = 0
        for _ in range(self.steps):
            s = sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.steps :], dim=1)


class SearchNetwork(nn.Module):
    """Stem, one normal and one reduction cell, classifier; arch logits are Parameters."""

    def __init__(self, table, names, c=8, steps=1, classes=3, context=None):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        if context is not None:
            self.shared = context.modules  # the network owns the operators' shared modules
        self.cells = nn.ModuleList(
            [
                Cell(table, names, steps, c, c, c, False, False),
                Cell(table, names, steps, c, steps * c, 2 * c, True, False),
            ]
        )
        self.head = nn.Linear(2 * c * steps, classes)
        n_edges = sum(2 + i for i in range(steps))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(n_edges, len(names)))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(n_edges, len(names)))

    def arch_parameters(self):
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self):
        ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            alpha = self.alpha_reduce if cell.reduction else self.alpha_normal
            s0, s1 = s1, cell(s0, s1, F.softmax(alpha, dim=-1))
        return self.head(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def test_search_step_with_every_registered_conv_operator():
    context = convnas.BuildContext()
    table = ops(context=context)
    names = primitives(include=["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"])
    conv_ops = convnas.list_operators(kind="conv")
    names += conv_ops
    assert set(conv_ops) <= set(table) and len(conv_ops) >= 10
    net = SearchNetwork(table, names, context=context)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.05, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=3e-3)
    x_train, y_train = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2,))
    x_val, y_val = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2,))
    alphas = [a.detach().clone() for a in net.arch_parameters()]

    a_opt.zero_grad()
    F.cross_entropy(net(x_val), y_val).backward()  # first-order architecture step
    grads = [a.grad for a in net.arch_parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    a_opt.step()
    w_opt.zero_grad()
    loss = F.cross_entropy(net(x_train), y_train)
    loss.backward()
    w_opt.step()

    assert torch.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(alphas, net.arch_parameters(), strict=True))
    # Every conv candidate of every edge received a gradient on its weights.
    for cell in net.cells:
        for edge in cell.edges:
            for name, op in zip(names, edge.ops, strict=True):
                if name in conv_ops:
                    got = [p.grad for p in op.parameters() if p.requires_grad]
                    assert got and all(g is not None for g in got), name
    # The CSG generator is shared by all CSG layers and owned by the network, once.
    assert len(context.modules) == 1
    owned = {id(p) for p in net.parameters()}
    assert all(id(p) in owned for p in context.modules.parameters())


def test_primitives_order_and_filters():
    names = primitives()
    assert names[:8] == DARTS_8
    assert set(convnas.list_operators()) == set(names)
    assert primitives(include=["c2sp", "*pool*", "none"]) == [
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "c2sp",
    ]
    assert "sw" not in primitives(exclude="sw*") and "sw_sep" not in primitives(exclude="sw*")
    assert darts.PRIMITIVES == names and set(darts.OPS) == set(names)
    with pytest.raises(OperatorArgumentError, match="include"):
        primitives(include=[1])


@pytest.mark.parametrize("stride", [1, 2])
def test_every_factory_keeps_channels_and_strides_like_darts(stride):
    table = ops(affine=False)
    x = torch.randn(2, 8, 9, 9)
    for name, factory in table.items():
        out = factory(8, stride)
        assert out(x).shape == (2, 8, 5 if stride == 2 else 9, 5 if stride == 2 else 9), name
        if convnas.operator_info(name).kind == "conv":  # ReLU-op-BN, affine as asked
            body, body_affine = _unpooled(out), _unpooled(factory(8, stride, True))
            assert isinstance(body[0], nn.ReLU) and isinstance(body[-1], nn.BatchNorm2d), name
            assert body[-1].affine is False and body_affine[-1].affine is True


def _unpooled(module):
    return module[-1] if isinstance(module[0], nn.AvgPool2d) else module


def test_conv_operator_is_relu_op_bn_and_blocks_are_as_registered():
    op = ops()["c2sp"](16, 1, True)
    torch.manual_seed(1)
    x = torch.randn(2, 16, 6, 6)
    op.eval()
    inner = op[1]
    ref = op[2](inner(torch.relu(x)))
    torch.testing.assert_close(op(x), ref)
    sep = ops()["sep_conv_3x3"](8, 2, False)
    assert type(sep).__name__ == "SepConv"
    assert all(not m.affine for m in sep.modules() if isinstance(m, nn.BatchNorm2d))
    assert ops()["skip_connect"](8, 1, False)(x[:, :8]).equal(x[:, :8])


def test_stride_one_only_operator_is_pooled_on_reduction_edges():
    assert convnas.operator_info("sw").strides == (1,)
    op = ops()["sw"](8, 2, False)
    assert isinstance(op[0], nn.AvgPool2d) and op[0].stride == 2
    assert op(torch.randn(1, 8, 7, 7)).shape == (1, 8, 4, 4)


def test_hparams_reach_the_operator_and_unknown_names_fail():
    default = ops()["osep_3x3"](32, 1, True)
    three = ops(hparams={"osep_3x3": {"n_sep": 3}})["osep_3x3"](32, 1, True)
    n = [sum(p.numel() for p in m[1].parameters()) for m in (default, three)]
    assert n[0] != n[1]
    with pytest.raises(OperatorArgumentError, match="unregistered"):
        ops(hparams={"osep_3x4": {}})
    with pytest.raises(UnknownOperatorError, match="did you mean"):
        darts.DartsOpFactory("c2spp")
