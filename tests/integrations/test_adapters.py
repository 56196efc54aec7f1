"""NAS-Bench-201, NNI and NASLib adapters."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

import convnas
from convnas.errors import OperatorArgumentError, OptionalDependencyError
from convnas.integrations import nasbench201, naslib, nni

GENOTYPE = "|nor_conv_3x3~0|+|c2sp~0|osep_3x3~1|+|skip_connect~0|csg_conv_3x3~1|avg_pool_3x3~2|"


class InferCell(nn.Module):
    """A NAS-Bench-201 cell from its genotype string: node i sums ops on nodes j < i."""

    def __init__(self, genotype, table, c_in, c_out, context):
        super().__init__()
        self.shared = context.modules
        self.nodes = []
        self.edges = nn.ModuleDict()
        for i, node in enumerate(genotype.strip("|").split("|+|"), start=1):
            inputs = []
            for item in node.strip("|").split("|"):
                name, j = item.split("~")
                key = f"{i}<-{j}"
                self.edges[key] = table[name](c_in if int(j) == 0 else c_out, c_out, 1, True, True)
                inputs.append((int(j), key))
            self.nodes.append(inputs)

    def forward(self, x):
        states = [x]
        for inputs in self.nodes:
            states.append(sum(self.edges[k](states[j]) for j, k in inputs))
        return states[-1]


def test_nb201_cell_builds_and_runs():
    context = convnas.BuildContext()
    cell = InferCell(GENOTYPE, nasbench201.ops(context=context), 8, 8, context)
    x = torch.randn(2, 8, 8, 8)
    out = cell(x)
    assert out.shape == (2, 8, 8, 8) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in cell.parameters())
    assert len(context.modules) == 1  # one CSG generator, owned by the cell
    # nor_conv_3x3 is ReLU, 3x3 conv, BN as NAS-Bench-201's ReLUConvBN.
    edge = cell.edges["1<-0"]
    assert [type(m) for m in edge] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert edge[1].kernel_size == (3, 3) and edge[1].padding == (1, 1)


def test_nb201_primitives_and_table():
    names = nasbench201.primitives()
    assert names[:5] == list(nasbench201.NB201_PRIMITIVES)
    assert "conv_3x3" not in names and "c2sp" in names
    table = nasbench201.ops()
    assert {"conv_3x3", "nor_conv_3x3", "osep_3x3"} <= set(table)
    assert set(nasbench201.ops(include="nor_*")) == {"nor_conv_1x1", "nor_conv_3x3"}


@pytest.mark.parametrize("name", nasbench201.ops())
def test_nb201_every_op_changes_channels_and_stride(name):
    op = nasbench201.ops()[name](8, 12, 2, False, False)
    out = op(torch.randn(2, 8, 9, 9))
    assert out.shape == (2, 12, 5, 5)
    bns = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.running_mean is None for m in bns)
    if bns:  # the edge's own BN; operators may hold inner BNs of their own (sw)
        assert not bns[-1].affine
    assert not any("running" in k for k in op.state_dict())
    if name == "none":
        assert not out.any()


def test_nb201_track_running_stats_kept_by_default():
    op = nasbench201.ops()["sep_conv_3x3"](8, 8, 1)
    bns = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.affine and m.running_var is not None for m in bns)


def test_nni_missing_gives_install_hint(monkeypatch):
    # importing these now raises ImportError, also where a real NNI was imported before
    for name in ("nni", "nni.nas.nn.pytorch", "nni.retiarii.nn.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(OptionalDependencyError, match="pip install nni"):
        nni.layer_choice(8, 8)
    with pytest.raises(ImportError):
        nni.layer_choice_class()


def _fake_nni(monkeypatch):
    class LayerChoice(nn.Module):
        def __init__(self, candidates, *, label=None):
            super().__init__()
            self.names = list(candidates)
            self.choices = nn.ModuleDict(candidates)
            self.label = label

    modules = {}
    for name in ("nni", "nni.nas", "nni.nas.nn", "nni.nas.nn.pytorch"):
        modules[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, modules[name])
    modules["nni.nas.nn.pytorch"].LayerChoice = LayerChoice
    return LayerChoice


def test_nni_layer_choice_with_an_nni_like_module(monkeypatch):
    cls = _fake_nni(monkeypatch)
    choice = nni.layer_choice(8, 16, 2, include=["conv_3x3", "c2sp", "osep_3x3"], label="b1")
    assert isinstance(choice, cls) and choice.label == "b1"
    assert choice.names == ["c2sp", "conv_3x3", "osep_3x3"]
    x = torch.randn(2, 8, 9, 9)
    for name in choice.names:
        assert choice.choices[name](x).shape == (2, 16, 5, 5)


def test_nni_bare_candidates_are_the_operators_that_fit():
    mods = nni.candidates(8, 16, 2, bare=True)
    fit = [
        n
        for n in convnas.list_operators(kind="conv")
        if 2 in convnas.operator_info(n).strides and convnas.operator_info(n).channel_change
    ]
    assert list(mods) == fit and "sw" not in mods and "none" not in mods
    assert isinstance(mods["conv_3x3"], nn.Conv2d)  # bare: no ReLU/BN around it
    with pytest.raises(OperatorArgumentError, match="no operator selected"):
        nni.candidates(8, 8, include=["nothing_*"])


def test_naslib_primitives_take_edge_data():
    prims = naslib.primitives(8, 8, 2, include=["none", "skip_connect", "c2sp", "osep_3x3"])
    assert [p.get_op_name for p in prims] == ["none", "skip_connect", "c2sp", "osep_3x3"]
    weights = torch.softmax(torch.randn(len(prims)), 0)
    x = torch.randn(2, 8, 8, 8)
    # A NASLib MixedOp calls every primitive as op(x, None).
    out = sum(w * p(x, None) for w, p in zip(weights, prims, strict=True))
    assert out.shape == (2, 8, 4, 4)
    assert all(p.get_embedded_ops() is None for p in prims)
    one = naslib.primitive("c2sp", 8)
    torch.testing.assert_close(one(x, {"anything": 1}), one.op(x))
    assert not any(m.affine for m in one.modules() if isinstance(m, nn.BatchNorm2d))
