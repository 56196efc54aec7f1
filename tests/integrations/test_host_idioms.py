"""The CSG generator in the idioms of DARTS-family hosts (written here; no host code vendored).

DARTS's architect unrolls with ``model.new()`` + ``load_state_dict``; AutoDL-Projects'
``get_weights()`` picks the weights by name; both deep-copy networks. The generator must be the
network's own in each of them, once, and a new network must never share another's.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convnas
from convnas.errors import OperatorArgumentError
from convnas.integrations.darts import ops
from convnas.operators.csg import CSGConv2d, SliceGenerator

PRIMS = ["skip_connect", "csg_conv_3x3", "avg_pool_3x3", "c2sp"]
CSG = {"csg_conv_3x3": {"slice_shape": (8, 8, 3, 3), "code_size": 8}}
GEN_PARAMS = 8 * 8 * 3 * 3 * 8


class MixedOp(nn.Module):
    def __init__(self, table, C, stride):  # noqa: N803
        super().__init__()
        self._ops = nn.ModuleList(table[p](C, stride, False) for p in PRIMS)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops, strict=True))


class Cell(nn.Module):
    def __init__(self, table, C, edges):  # noqa: N803
        super().__init__()
        self._ops = nn.ModuleList(MixedOp(table, C, 1) for _ in range(edges))

    def forward(self, x, weights):
        for op, w in zip(self._ops, weights, strict=True):
            x = op(x, w)
        return x


class Network(nn.Module):
    """DARTS's search network in miniature: alphas are plain tensors, not parameters."""

    def __init__(self, table, C=8, layers=2, edges=2, classes=3, shared=None):  # noqa: N803
        super().__init__()
        self._table, self._C, self._layers, self._edges, self._classes = (
            table,
            C,
            layers,
            edges,
            classes,
        )
        self._shared = shared
        self.stem = nn.Conv2d(3, C, 3, padding=1, bias=False)
        self.cells = nn.ModuleList(Cell(table, C, edges) for _ in range(layers))
        self.classifier = nn.Linear(C, classes)
        if shared is not None:  # the researcher's recipe: own the captured context's modules
            self.shared = shared
        self.alphas = 1e-3 * torch.randn(edges, len(PRIMS))
        self.alphas.requires_grad_(True)

    def new(self):
        model_new = type(self)(
            self._table, self._C, self._layers, self._edges, self._classes, self._shared
        )
        model_new.alphas.data.copy_(self.alphas.data)
        return model_new

    def forward(self, x):
        x = self.stem(x)
        weights = F.softmax(self._arch(), dim=-1)
        for cell in self.cells:
            x = cell(x, weights)
        return self.classifier(x.mean((2, 3)))

    def _arch(self):
        return self.alphas

    def _loss(self, x, y):
        return F.cross_entropy(self(x), y)


class AutoDLNetwork(Network):
    """AutoDL-Projects' style: architecture parameters registered, weights picked by name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arch_parameters = nn.Parameter(1e-3 * torch.randn(self._edges, len(PRIMS)))

    def _arch(self):
        return self.arch_parameters

    def get_weights(self):
        return [p for n, p in self.named_parameters() if "arch" not in n]


def _generators(net):
    return {id(m.generator): m.generator for m in net.modules() if isinstance(m, CSGConv2d)}


def _one_generator(net) -> SliceGenerator:
    gens = list(_generators(net).values())
    assert len(gens) == 1, f"{len(gens)} generators, one expected"
    return gens[0]


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)


def _unrolled_model(model, x, y, eta=0.1):
    """DARTS's ``Architect._compute_unrolled_model`` + ``_construct_model_from_theta``."""
    loss = model._loss(x, y)
    theta = torch.cat([v.data.view(-1) for v in model.parameters()])
    grads = torch.autograd.grad(loss, list(model.parameters()))
    dtheta = torch.cat([g.view(-1) for g in grads])
    theta = theta - eta * dtheta
    model_new = model.new()
    model_dict = model.state_dict()
    params, offset = {}, 0
    for k, v in model.named_parameters():
        n = v.numel()
        params[k] = theta[offset : offset + n].view(v.size())
        offset += n
    assert offset == len(theta)
    model_dict.update(params)
    model_new.load_state_dict(model_dict)
    return model_new


def test_darts_unrolled_step_leaves_the_real_generator_alone():
    torch.manual_seed(0)
    model = Network(ops(affine=False, include=PRIMS, hparams=CSG))
    gen = _one_generator(model)
    before = gen.weight.detach().clone()
    x, y = _batch()
    model_new = _unrolled_model(model, x, y)
    gen_new = _one_generator(model_new)
    assert gen_new is not gen and gen_new.weight is not gen.weight
    assert not torch.equal(gen_new.weight, before)  # the unrolled step moved the copy's A
    torch.testing.assert_close(gen.weight.detach(), before, rtol=0, atol=0)
    # A weight step on the unrolled copy (the architect's virtual step) leaves the real one.
    opt = torch.optim.SGD(model_new.parameters(), lr=0.5)
    model_new._loss(x, y).backward()
    assert gen_new.weight.grad is not None and gen_new.weight.grad.abs().sum() > 0
    opt.step()
    torch.testing.assert_close(gen.weight.detach(), before, rtol=0, atol=0)
    # The architecture gradient through the unrolled model reaches the alphas.
    (a_grad,) = torch.autograd.grad(model_new._loss(*_batch(1)), [model_new.alphas])
    assert torch.isfinite(a_grad).all() and a_grad.abs().sum() > 0


def test_a_context_captured_in_a_closure_is_refused_by_a_second_network():
    context = convnas.BuildContext()
    table = ops(affine=False, include=PRIMS, hparams=CSG, context=context)
    model = Network(table, shared=context.modules)
    assert _one_generator(model) is next(iter(context.modules.values()))
    with pytest.raises(OperatorArgumentError, match="per_network"):
        model.new()  # would share, and overwrite, the real network's generator


def test_autodl_get_weights_includes_the_generator_and_steps_it():
    torch.manual_seed(0)
    model = AutoDLNetwork(ops(affine=False, include=PRIMS, hparams=CSG))
    gen = _one_generator(model)
    weights = model.get_weights()
    ids = [id(p) for p in weights]
    assert ids.count(id(gen.weight)) == 1
    assert id(model.arch_parameters) not in ids
    assert {id(p) for p in model.parameters()} == {*ids, id(model.arch_parameters)}
    before = gen.weight.detach().clone()
    opt = torch.optim.SGD(weights, lr=0.5)
    model._loss(*_batch()).backward()
    opt.step()
    assert not torch.equal(gen.weight.detach(), before)
    # AutoDL's unrolled step flattens get_weights(); the network's copy loads it by name.
    model_new = AutoDLNetwork(model._table)
    model_new.load_state_dict(model.state_dict())
    assert _one_generator(model_new) is not gen
    torch.testing.assert_close(_one_generator(model_new).weight, gen.weight)


def test_deepcopy_keeps_one_shared_generator_in_the_copy():
    model = Network(ops(affine=False, include=PRIMS, hparams=CSG))
    gen = _one_generator(model)
    clone = copy.deepcopy(model)
    layers = [m for m in clone.modules() if isinstance(m, CSGConv2d)]
    assert len(layers) == 4
    gen_copy = _one_generator(clone)
    assert all(m.generator is gen_copy for m in layers)
    assert gen_copy is not gen and gen_copy.weight is not gen.weight
    torch.testing.assert_close(gen_copy.weight, gen.weight)
    names = [n for n, p in clone.named_parameters(remove_duplicate=False) if p is gen_copy.weight]
    assert len(names) == 1
    assert sum(k.endswith("generator.weight") for k in clone.state_dict()) == 1


def test_supernet_counts_the_generator_once():
    wide = {"csg_conv_3x3": {}}  # the default generator: (16, 16, 3, 3), code size 128
    model = Network(ops(affine=False, include=PRIMS, hparams=wide), C=16, layers=3, edges=4)
    gen = _one_generator(model)
    assert gen.weight.numel() == 16 * 16 * 9 * 128 == 294_912
    layers = [m for m in model.modules() if isinstance(m, CSGConv2d)]
    assert len(layers) == 12
    own = sum(p.numel() for m in model.modules() for p in m.parameters(recurse=False))
    total = sum(p.numel() for p in model.parameters())
    assert total == own
    codes = sum(m.codes.numel() for m in layers)
    rest = sum(
        p.numel()
        for m in model.modules()
        if not isinstance(m, (CSGConv2d, SliceGenerator))
        for p in m.parameters(recurse=False)
    )
    assert total == rest + codes + gen.weight.numel()


def test_ops_outside_a_network_and_explicit_layer_owned_context():
    table = ops(affine=False, include=PRIMS, hparams=CSG)
    a, b = table["csg_conv_3x3"](8, 1), table["csg_conv_3x3"](8, 1)
    assert _one_generator(a) is not _one_generator(b)  # no network: each owns its own
    context = convnas.BuildContext(owner="layer")
    model = AutoDLNetwork(ops(affine=False, include=PRIMS, hparams=CSG, context=context))
    gen = _one_generator(model)
    assert len(context.modules) == 0 and len(context) == 1
    assert id(gen.weight) in {id(p) for p in model.get_weights()}
    with pytest.raises(OperatorArgumentError, match="context"):
        ops(context="global")
